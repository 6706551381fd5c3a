//! Whom sendmail trusts on `smtp://` (after STARTTLS) and `smtps://`: the system's CA store,
//! plus the certificates of `ca_file` in the sendmail config and of `$SSL_CERT_FILE`, with a
//! listed self-signed relay certificate accepted for its names (see [`crate::trust`]).

use super::target::SendmailConfig;
use super::{Failure, EX_CONFIG};
use std::sync::Arc;

/// The TLS client configuration: the system roots plus `ca_file` and `$SSL_CERT_FILE`.
pub fn tls_config(config: &SendmailConfig) -> Result<Arc<rustls::ClientConfig>, Failure> {
    crate::trust::Trust::for_clients(config.ca_file.as_deref())
        .map(|t| t.client())
        .map_err(|e| Failure::new(EX_CONFIG, e))
}

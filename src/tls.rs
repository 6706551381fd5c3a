//! The server side of TLS: the certificate and key from PEM files, as a rustls configuration
//! (the listeners' STARTTLS and implicit TLS). Loaded with the rest of the `Core`; imports
//! nothing else of ours.

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Load `certificate` (chain) and `private_key` into a server configuration.
pub fn load(certificate: &Path, private_key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| format!("{}: {e}", certificate.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", certificate.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", certificate.display()));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| format!("{}: {e}", private_key.display()))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} does not fit {}: {e}",
                private_key.display(),
                certificate.display()
            )
        })?;
    Ok(Arc::new(config))
}

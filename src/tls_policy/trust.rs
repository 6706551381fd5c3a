//! Whom the relay trusts when a policy demands a verified certificate on the way out: the
//! system's CA store plus the certificates of `delivery.ca_file`. One `Trust` per loaded
//! configuration; MTA-STS policy hosts, MX hosts under an MTA-STS policy and HTTPS report
//! endpoints are all checked against it (webpki: chain, validity period, host name).

use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// The roots, and the TLS client configurations built on them.
#[derive(Clone, Debug)]
pub struct Trust {
    verifier: Arc<WebPkiServerVerifier>,
    /// For HTTPS (ALPN http/1.1).
    https: Arc<rustls::ClientConfig>,
    /// For SMTP after STARTTLS (no ALPN, RFC 7672 and 8461 ask for none).
    smtp: Arc<rustls::ClientConfig>,
    /// How many roots there are, for check-config.
    pub roots: usize,
}

impl Trust {
    /// The system roots plus `ca_file`. A `ca_file` that cannot be read or holds no
    /// certificate is an error; so is ending up with no root at all.
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(file) = ca_file {
            let certs = read_pem(file)?;
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "{}: no usable CA certificate ({ignored} could not be parsed)",
                    file.display()
                ));
            }
        }
        Self::from_roots(roots)
    }

    /// Only the given certificates (tests).
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certs);
        Self::from_roots(roots)
    }

    fn from_roots(roots: RootCertStore) -> Result<Trust, String> {
        let count = roots.len();
        if count == 0 {
            return Err(
                "no CA certificates: install the system's (Debian: ca-certificates) or name a PEM \
                 file in delivery.ca_file"
                    .into(),
            );
        }
        let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("CA certificates: {e}"))?;
        let config = |alpn: Vec<Vec<u8>>| {
            let mut c = rustls::ClientConfig::builder()
                .with_webpki_verifier(verifier.clone())
                .with_no_client_auth();
            c.alpn_protocols = alpn;
            Arc::new(c)
        };
        Ok(Trust {
            https: config(vec![b"http/1.1".to_vec()]),
            smtp: config(Vec::new()),
            verifier,
            roots: count,
        })
    }

    /// The client configuration for HTTPS requests.
    pub fn https(&self) -> Arc<rustls::ClientConfig> {
        self.https.clone()
    }

    /// The client configuration for SMTP to a host whose certificate must verify.
    pub fn smtp(&self) -> Arc<rustls::ClientConfig> {
        self.smtp.clone()
    }

    /// The verifier itself, for policies that build their own (DANE-TA falls back to it).
    pub fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.verifier.clone()
    }
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: String| format!("{}: {e}", path.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Trust::load(Some(&empty)).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        assert!(Trust::load(Some(&missing))
            .unwrap_err()
            .contains("missing.pem"));
        let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/dev-cert.pem");
        let t = Trust::load(Some(&dev)).unwrap();
        assert!(t.roots >= 1);
        assert!(Trust::from_certificates(Vec::new()).is_err());
    }
}

//! Whom our TLS clients trust, and what every certificate check of ours shares. Imports
//! nothing else of ours.
//!
//! Two sets of roots, one [`Trust`]:
//! - [`Trust::for_delivery`]: the system's CA store plus `delivery.ca_file`. One per loaded
//!   configuration; MTA-STS policy hosts, MX hosts under an MTA-STS policy and HTTPS report
//!   endpoints are all checked against it (webpki: chain, validity period, host name).
//! - [`Trust::for_clients`]: the clients an operator points at a server of their own (the
//!   sendmail front end's `smtp://`/`smtps://` submission, `dmarc-report --imap`): the system's
//!   CA store, plus the certificates of `$SSL_CERT_FILE` and of a CA file the operator names. A
//!   server with a self-signed certificate (what `openssl req -x509` makes: CA:TRUE, as
//!   Debian's Dovecot and many private relays have) is trusted when that very certificate is
//!   listed there and names the host: webpki alone refuses any CA certificate as a server's,
//!   which would leave private servers no way in.
//!
//! The verifiers that keep a verdict for a report (`tls_policy::verify`, `dane::verify`) build
//! their client configuration with [`config_with`] and take their handshake-signature checks
//! from [`signature_checks!`].

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// The handshake-signature methods of a `ServerCertVerifier`, the same in every verifier of
/// ours (they differ only in how they judge the certificate): checked with
/// [`signature_algorithms`].
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                $crate::trust::signature_algorithms(),
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                $crate::trust::signature_algorithms(),
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            $crate::trust::signature_algorithms().supported_schemes()
        }
    };
}
pub(crate) use signature_checks;

/// The system's well-known CA bundles, read in addition when `$SSL_CERT_FILE`/`$SSL_CERT_DIR`
/// make rustls-native-certs read only those.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The roots, and the TLS client configurations built on them.
#[derive(Clone, Debug)]
pub struct Trust {
    verifier: Arc<Verifier>,
    /// For HTTPS (ALPN http/1.1).
    https: Arc<rustls::ClientConfig>,
    /// Without ALPN: SMTP after STARTTLS (RFC 7672 and 8461 ask for none), smtps, IMAP.
    client: Arc<rustls::ClientConfig>,
    /// How many roots there are, for check-config.
    pub roots: usize,
}

impl Trust {
    /// The system roots plus `ca_file`. A `ca_file` that cannot be read or holds no
    /// certificate is an error; so is ending up with no root at all.
    pub fn for_delivery(ca_file: Option<&Path>) -> Result<Trust, String> {
        let mut roots = system_roots();
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
        if roots.is_empty() {
            return Err(
                "no CA certificates: install the system's (Debian: ca-certificates) or name a PEM \
                 file in delivery.ca_file"
                    .into(),
            );
        }
        let count = roots.len();
        let webpki = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("CA certificates: {e}"))?;
        Ok(Trust::new(webpki, Vec::new(), count))
    }

    /// The system roots, `$SSL_CERT_FILE` and `ca_file`, a self-signed server certificate
    /// listed in either accepted for its names. The error names the file that could not be
    /// used.
    pub fn for_clients(ca_file: Option<&Path>) -> Result<Trust, String> {
        let mut roots = system_roots();
        let env_overrides = std::env::var_os("SSL_CERT_FILE").is_some()
            || std::env::var_os("SSL_CERT_DIR").is_some();
        if env_overrides {
            if let Some(bundle) = SYSTEM_BUNDLES.iter().find(|p| Path::new(p).exists()) {
                // The system store is a bonus here; the files named explicitly are checked below.
                let _ = read_pem(Path::new(bundle)).map(|c| roots.add_parsable_certificates(c));
            }
        }
        let mut listed = Vec::new();
        if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
            listed.extend(read_pem(Path::new(&file)).map_err(|e| format!("CA file {e}"))?);
        }
        if let Some(file) = ca_file {
            listed.extend(read_pem(file).map_err(|e| format!("CA file {e}"))?);
        }
        roots.add_parsable_certificates(listed.iter().cloned());
        let count = roots.len();
        let webpki = WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("no usable CA certificate: {e}"))?;
        Ok(Trust::new(webpki, listed, count))
    }

    fn new(
        webpki: Arc<WebPkiServerVerifier>,
        listed: Vec<CertificateDer<'static>>,
        roots: usize,
    ) -> Trust {
        let verifier = Arc::new(Verifier { webpki, listed });
        let https = {
            let mut c = Arc::unwrap_or_clone(config_with(verifier.clone()));
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        };
        Trust {
            client: config_with(verifier.clone()),
            https,
            verifier,
            roots,
        }
    }

    /// The client configuration for HTTPS requests.
    pub fn https(&self) -> Arc<rustls::ClientConfig> {
        self.https.clone()
    }

    /// The client configuration without ALPN: SMTP to a host whose certificate must verify,
    /// IMAP.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// The verifier itself, for checks that keep a verdict (`tls_policy::verify`).
    pub fn verifier(&self) -> Arc<Verifier> {
        self.verifier.clone()
    }
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// The certificates of a PEM file; the error names the file.
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

/// webpki's verification (chain to a root, validity period, host name), plus: a server
/// certificate refused only for being a CA certificate is accepted when it is byte for byte
/// one the operator listed and it names the host (never for delivery, which lists none).
#[derive(Debug)]
pub struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    listed: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let Err(rustls::Error::InvalidCertificate(CertificateError::Other(other))) = &result else {
            return result;
        };
        // webpki checks the validity period before the basic constraints, so this error also
        // says the certificate is current.
        let ca_as_server =
            other.0.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity);
        if !ca_as_server
            || !self
                .listed
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return result;
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// A TLS client configuration (no ALPN, no client certificate) that checks servers with
/// `verifier`.
pub fn config_with(verifier: Arc<dyn ServerCertVerifier>) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

/// The algorithms handshake signatures are checked with: the crypto provider's (aws-lc-rs),
/// as webpki's own verifier checks them.
pub fn signature_algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGORITHMS: LazyLock<WebPkiSupportedAlgorithms> = LazyLock::new(|| {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
    });
    &ALGORITHMS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_cert() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/dev-cert.pem")
    }

    fn verify(ca_file: Option<&str>, name: &str) -> Result<ServerCertVerified, rustls::Error> {
        let dev = dev_cert();
        let cert = read_pem(&dev).unwrap().remove(0);
        let name = ServerName::try_from(name.to_string()).unwrap();
        Trust::for_clients(ca_file.map(|_| dev.as_path()))
            .unwrap()
            .verifier()
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn a_listed_self_signed_certificate_is_trusted_for_its_names_only() {
        assert!(verify(Some("dev"), "localhost").is_ok());
        assert!(verify(Some("dev"), "127.0.0.1").is_ok());
        assert_eq!(
            verify(Some("dev"), "other.test").unwrap_err(),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
        );
        assert!(
            verify(None, "localhost").is_err(),
            "not listed: not trusted"
        );
    }

    #[test]
    fn delivery_lists_no_self_signed_certificate() {
        let dev = dev_cert();
        let cert = read_pem(&dev).unwrap().remove(0);
        let name = ServerName::try_from("localhost").unwrap();
        let got = Trust::for_delivery(Some(&dev))
            .unwrap()
            .verifier()
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now());
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn ca_file_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Trust::for_delivery(Some(&empty)).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = Trust::for_clients(Some(&empty)).unwrap_err();
        assert!(
            e.starts_with("CA file ") && e.contains("no certificate"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        assert!(Trust::for_delivery(Some(&missing))
            .unwrap_err()
            .contains("missing.pem"));
        let t = Trust::for_delivery(Some(&dev_cert())).unwrap();
        assert!(t.roots >= 1);
    }
}

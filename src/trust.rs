//! Whom our TLS clients trust (the sendmail front end's `smtp://`/`smtps://` submission and
//! `dmarc-report --imap`): the system's CA store, plus the certificates of `$SSL_CERT_FILE` and
//! of a CA file the operator names. A server with a self-signed certificate (what
//! `openssl req -x509` makes: CA:TRUE, as Debian's Dovecot and many private relays have) is
//! trusted when that very certificate is listed there and names the host: webpki alone refuses
//! any CA certificate as a server's, which would leave private servers no way in. Imports
//! nothing else of ours.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

/// The system's well-known CA bundles, read in addition when `$SSL_CERT_FILE`/`$SSL_CERT_DIR`
/// make rustls-native-certs read only those.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A TLS client configuration trusting the system roots, `$SSL_CERT_FILE` and `ca_file`.
/// The error names the file that could not be used.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let tls = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier(ca_file)?))
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

fn verifier(ca_file: Option<&Path>) -> Result<Verifier, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let env_overrides =
        std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    if env_overrides {
        if let Some(bundle) = SYSTEM_BUNDLES.iter().find(|p| Path::new(p).exists()) {
            // The system store is a bonus here; the files named explicitly are checked below.
            let _ = read_pem(Path::new(bundle)).map(|c| roots.add_parsable_certificates(c));
        }
    }
    let mut explicit = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        explicit.extend(read_pem(Path::new(&file))?);
    }
    if let Some(file) = ca_file {
        explicit.extend(read_pem(file)?);
    }
    roots.add_parsable_certificates(explicit.iter().cloned());
    let webpki = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("no usable CA certificate: {e}"))?;
    Ok(Verifier { webpki, explicit })
}

fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: String| format!("CA file {}: {e}", path.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

/// webpki's verification, plus: a server certificate refused only for being a CA certificate
/// is accepted when it is byte for byte one the operator listed and it names the host.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    explicit: Vec<CertificateDer<'static>>,
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
                .explicit
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(ca_file: Option<&str>, name: &str) -> Result<ServerCertVerified, rustls::Error> {
        let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/dev-cert.pem");
        let cert = read_pem(&dev).unwrap().remove(0);
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier(ca_file.map(|_| dev.as_path()))
            .unwrap()
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
}

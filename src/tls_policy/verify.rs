//! The certificate check of an MX host under an MTA-STS policy (RFC 8461 4.2): webpki against
//! [`Trust`] (chain to a trusted root, validity period, the MX host name as DNS-ID). The
//! verdict is kept for the session's TLS report. Enforced, a failed check also fails the
//! handshake (the mail waits, never goes in clear); in testing the handshake goes on and only
//! the verdict tells.

use super::report::{FailureDetail, ResultType};
use crate::trust::{self, Trust};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

/// One connection's certificate check.
#[derive(Debug)]
pub struct PolicyVerifier {
    webpki: Arc<trust::Verifier>,
    enforce: bool,
    verdict: Mutex<Option<Result<(), rustls::Error>>>,
}

impl PolicyVerifier {
    /// A TLS client configuration checking as the policy says, and the verifier whose verdict
    /// to read after the handshake. One per connection.
    pub fn client_config(
        trust: &Trust,
        enforce: bool,
    ) -> (Arc<rustls::ClientConfig>, Arc<PolicyVerifier>) {
        let verifier = Arc::new(PolicyVerifier {
            webpki: trust.verifier(),
            enforce,
            verdict: Mutex::new(None),
        });
        (trust::config_with(verifier.clone()), verifier)
    }

    /// What the check found.
    pub fn verdict(&self) -> Verdict {
        let v = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
        match v.as_ref() {
            None => Verdict::Unchecked,
            Some(Ok(())) => Verdict::Valid,
            Some(Err(e)) => Verdict::Invalid(handshake_failure(Some(e), &e.to_string())),
        }
    }
}

/// The outcome of one connection's certificate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No certificate was seen (the handshake failed earlier, or never began).
    Unchecked,
    Valid,
    /// As a TLS report names the failure.
    Invalid(FailureDetail),
}

impl ServerCertVerifier for PolicyVerifier {
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
        let verdict = result.as_ref().map(|_| ()).map_err(Clone::clone);
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        match result {
            Ok(v) => Ok(v),
            Err(e) if self.enforce => Err(e),
            Err(_) => Ok(ServerCertVerified::assertion()),
        }
    }

    trust::signature_checks!();
}

/// A handshake that failed (a certificate refused, no common cipher, a TLS alert, a reset):
/// what a report calls it. `error` is rustls' error when there is one; `text` says what
/// happened.
pub fn handshake_failure(error: Option<&rustls::Error>, text: &str) -> FailureDetail {
    FailureDetail::because(
        error.map_or(ResultType::ValidationFailure, ResultType::of_tls_error),
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::test_ca::{self, TestCa};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Handshake with a server presenting `issued`, as `name`; the client's view.
    async fn handshake(
        ca: &TestCa,
        issued: &test_ca::Issued,
        name: &str,
        enforce: bool,
    ) -> (Result<(), String>, Verdict) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(TestCa::server_config(issued, &[]));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.write_all(b"220 hello\r\n").await;
                let _ = tls.shutdown().await;
            }
        });
        let trust = Trust::for_delivery(Some(&ca.ca_file())).unwrap();
        let (config, verifier) = PolicyVerifier::client_config(&trust, enforce);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from(name.to_string()).unwrap();
        let result = match connector.connect(name, tcp).await {
            Ok(mut tls) => {
                let mut buf = [0u8; 11];
                tls.read_exact(&mut buf)
                    .await
                    .map_err(|e| e.to_string())
                    .map(|_| ())
            }
            Err(e) => Err(e.to_string()),
        };
        let _ = server.await;
        (result, verifier.verdict())
    }

    fn invalid(v: Verdict) -> ResultType {
        match v {
            Verdict::Invalid(f) => f.result,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn verdicts_enforced_and_not() {
        let ca = TestCa::new();
        let good = ca.issue("mx", &["mx1.a.example"]);
        let (r, v) = handshake(&ca, &good, "mx1.a.example", true).await;
        assert_eq!(r, Ok(()));
        assert_eq!(v, Verdict::Valid);

        // The wrong name: enforced, no session; testing, a session and a verdict to report.
        let (r, v) = handshake(&ca, &good, "mx2.a.example", true).await;
        assert!(r.is_err());
        assert_eq!(invalid(v), ResultType::CertificateHostMismatch);
        let (r, v) = handshake(&ca, &good, "mx2.a.example", false).await;
        assert_eq!(r, Ok(()));
        assert_eq!(invalid(v), ResultType::CertificateHostMismatch);

        let expired = ca.issue_expired("old", &["mx1.a.example"]);
        let (r, v) = handshake(&ca, &expired, "mx1.a.example", true).await;
        assert!(r.is_err());
        assert_eq!(invalid(v), ResultType::CertificateExpired);

        let stranger = TestCa::new();
        let untrusted = stranger.issue("mx", &["mx1.a.example"]);
        let (r, v) = handshake(&ca, &untrusted, "mx1.a.example", true).await;
        assert!(r.is_err());
        assert_eq!(invalid(v), ResultType::CertificateNotTrusted);
    }
}

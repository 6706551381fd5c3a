//! The certificate check of an MX host with usable TLSA records (RFC 7672 3.1, 3.2), as a
//! rustls `ServerCertVerifier`:
//! - DANE-EE(3): the server's certificate (or its key) is the one in DNS. Nothing else is
//!   checked: not its names, not its dates, not who issued it (3.1.1).
//! - DANE-TA(2): a certificate the server presents (or, for `2 0 0`, the one in the record
//!   itself) is the trust anchor; the server's certificate must chain to it (webpki, with it as
//!   the only anchor), be current, and name one of the reference identifiers: the TLSA base
//!   domain, the MX host name, the recipient domain (3.2.2, 3.2.3). Names are matched as
//!   webpki matches them: the DNS names of the subjectAltName, a wildcard standing for one
//!   whole leftmost label; a certificate that names its host only in the subject's CN names
//!   nothing (RFC 9525 6.3 retired that fallback, which RFC 7672 3.2.3 still allowed).
//!
//! Any usable record that matches is enough (RFC 6698 2.1: records are alternatives). What was
//! found is kept as the connection's [`Verdict`], for the logs and the TLS report; a failure
//! also fails the handshake, so nothing is sent to a host that did not authenticate — unless
//! the check is [`relaxed`](DaneVerifier::relaxed) (a message marked `TLS-Required: No`,
//! RFC 8689), when only the verdict tells.

use super::tlsa::{Part, Tlsa, Usage};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use std::sync::{Arc, Mutex};

/// How a connection's certificate check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No certificate was seen (the handshake failed before, or never began).
    Unchecked,
    /// Authenticated by this record (presentation form).
    Matched(String),
    Failed(Failure),
}

/// Why a certificate did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No usable record matches the certificate or any certificate of the chain.
    NoMatch,
    /// A DANE-TA record matched, but the server's certificate does not chain to that anchor.
    NotTrusted(String),
    /// DANE-TA: the server's certificate is outside its validity period.
    Expired(String),
    /// DANE-TA: the server's certificate names none of the reference identifiers.
    NameMismatch,
    /// The server's certificate cannot be read.
    Unreadable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoMatch => f.write_str("no TLSA record matches the certificate chain"),
            Failure::NotTrusted(e) => write!(f, "the certificate does not chain to the DANE-TA trust anchor ({e})"),
            Failure::Expired(e) => write!(f, "the certificate is not valid now ({e})"),
            Failure::NameMismatch => f.write_str("the certificate does not name the MX host, the TLSA base domain or the recipient domain"),
            Failure::Unreadable(e) => write!(f, "the certificate cannot be read ({e})"),
        }
    }
}

impl Failure {
    /// As rustls reports it (the handshake fails with this).
    fn to_rustls(&self) -> rustls::Error {
        rustls::Error::InvalidCertificate(match self {
            Failure::NoMatch => CertificateError::ApplicationVerificationFailure,
            Failure::NotTrusted(_) => CertificateError::UnknownIssuer,
            Failure::Expired(_) => CertificateError::Expired,
            Failure::NameMismatch => CertificateError::NotValidForName,
            Failure::Unreadable(_) => CertificateError::BadEncoding,
        })
    }
}

/// One connection's DANE check.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    /// Reference identifiers for DANE-TA name checks.
    names: Vec<ServerName<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
    /// A failed check fails the handshake.
    enforce: bool,
    verdict: Mutex<Verdict>,
}

impl DaneVerifier {
    /// A verifier for `records` (the usable ones of the host's RRset) and the reference
    /// identifiers `names` (those that are not DNS names are left out).
    pub fn new(records: Vec<Tlsa>, names: &[&str]) -> DaneVerifier {
        let mut refs: Vec<ServerName<'static>> = Vec::new();
        for n in names {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if let Ok(name) = ServerName::try_from(n) {
                if !refs.contains(&name) {
                    refs.push(name);
                }
            }
        }
        DaneVerifier {
            records,
            names: refs,
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
            enforce: true,
            verdict: Mutex::new(Verdict::Unchecked),
        }
    }

    /// Check and keep the verdict, but let the handshake go on whatever it is.
    pub fn relaxed(mut self) -> DaneVerifier {
        self.enforce = false;
        self
    }

    /// A TLS client configuration that checks the server as this verifier says (no ALPN,
    /// SNI sent), and the verifier whose verdict to read after the handshake. One per
    /// connection.
    pub fn client_config(self) -> (Arc<rustls::ClientConfig>, Arc<DaneVerifier>) {
        let verifier = Arc::new(self);
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        (Arc::new(config), verifier)
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The check itself: which record authenticates the chain, or why none does.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<String, Failure> {
        if let Some(r) = self
            .records
            .iter()
            .find(|r| r.usage == Usage::EndEntity && r.matches(end_entity))
        {
            return Ok(r.presentation());
        }
        let mut first_failure = None;
        for r in self
            .records
            .iter()
            .filter(|r| r.usage == Usage::TrustAnchor)
        {
            // The anchor: a certificate of the chain the record matches, or (2 0 0) the
            // record's own certificate, when the server left its trust anchor out.
            let in_chain = intermediates.iter().position(|c| r.matches(c));
            let from_dns = (r.part == Part::Certificate && r.digest == super::tlsa::Digest::Full)
                .then(|| CertificateDer::from(r.data.as_slice()));
            let anchor_cert = match (in_chain, &from_dns) {
                (Some(i), _) => &intermediates[i],
                (None, Some(c)) => c,
                (None, None) => continue,
            };
            let Ok(anchor) = webpki::anchor_from_trusted_cert(anchor_cert) else {
                continue;
            };
            // The anchor itself stays out of the path's candidate intermediates.
            let others: Vec<CertificateDer<'_>> = intermediates
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != in_chain)
                .map(|(_, c)| c.clone())
                .collect();
            match self.chain_to(end_entity, &others, anchor, now) {
                Ok(()) => return Ok(r.presentation()),
                Err(f) => {
                    first_failure.get_or_insert(f);
                }
            }
        }
        Err(first_failure.unwrap_or(Failure::NoMatch))
    }

    /// DANE-TA: the leaf chains to `anchor`, is current, and names a reference identifier.
    fn chain_to(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        anchor: TrustAnchor<'_>,
        now: UnixTime,
    ) -> Result<(), Failure> {
        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| Failure::Unreadable(e.to_string()))?;
        leaf.verify_for_usage(
            self.algorithms.all,
            &[anchor],
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. }
            | webpki::Error::CertNotValidYet { .. }
            | webpki::Error::InvalidCertValidity => Failure::Expired(e.to_string()),
            e => Failure::NotTrusted(e.to_string()),
        })?;
        if self
            .names
            .iter()
            .any(|n| leaf.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(())
        } else {
            Err(Failure::NameMismatch)
        }
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.check(end_entity, intermediates, now);
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = match &result {
            Ok(record) => Verdict::Matched(record.clone()),
            Err(f) => Verdict::Failed(f.clone()),
        };
        match result {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(f) if self.enforce => Err(f.to_rustls()),
            Err(_) => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[path = "../../tests/support/dane_certs.rs"]
mod dane_certs;

#[cfg(test)]
mod tests {
    use super::dane_certs::{self, Ca, Issued, Validity};
    use super::*;
    use mail_auth::hickory_resolver::proto::rr::rdata::TLSA;

    /// A usable record from its presentation form.
    fn tlsa(text: &str) -> Tlsa {
        let f: Vec<&str> = text.split(' ').collect();
        let data: Vec<u8> = (0..f[3].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&f[3][i..i + 2], 16).unwrap())
            .collect();
        let rec = TLSA::new(
            f[0].parse::<u8>().unwrap().into(),
            f[1].parse::<u8>().unwrap().into(),
            f[2].parse::<u8>().unwrap().into(),
            data,
        );
        Tlsa::usable(&rec).expect("usable")
    }

    const NAMES: [&str; 2] = ["mx.example.net", "example.com"];

    fn check(records: &[String], leaf: &Issued, chain: &[&Issued]) -> Result<String, Failure> {
        let v = DaneVerifier::new(records.iter().map(|r| tlsa(r)).collect(), &NAMES);
        let chain: Vec<CertificateDer<'_>> = chain.iter().map(|c| c.cert.clone()).collect();
        v.check(&leaf.cert, &chain, UnixTime::now())
    }

    #[test]
    fn dane_ee_matches_the_leaf_and_nothing_else_counts() {
        // Expired, self-signed, for another name: DANE-EE checks none of that.
        let leaf = dane_certs::self_signed(&["other.example.org"], Validity::Expired);
        for (s, m) in [(1, 1), (0, 1), (1, 2), (0, 2), (1, 0), (0, 0)] {
            let rec = leaf.tlsa(3, s, m);
            let matched = check(std::slice::from_ref(&rec), &leaf, &[]).unwrap();
            assert!(matched.eq_ignore_ascii_case(&rec), "{matched} {rec}");
        }
        let stranger = dane_certs::self_signed(&["mx.example.net"], Validity::Current);
        assert_eq!(
            check(&[stranger.tlsa(3, 1, 1)], &leaf, &[]),
            Err(Failure::NoMatch)
        );
        // A DANE-EE record of a chain certificate is no match: EE means the leaf.
        let ca = Ca::root("CA");
        let leaf = ca.issue(&["mx.example.net"], Validity::Current);
        assert_eq!(
            check(&[ca.issued.tlsa(3, 1, 1)], &leaf, &[&ca.issued]),
            Err(Failure::NoMatch)
        );
        // One matching record among others is enough.
        let records = [stranger.tlsa(3, 1, 1), leaf.tlsa(3, 1, 1)];
        assert!(check(&records, &leaf, &[&ca.issued]).is_ok());
    }

    #[test]
    fn dane_ta_needs_a_chain_to_the_anchor_a_name_and_a_date() {
        let root = Ca::root("Root");
        let mid = root.intermediate("Intermediate");
        let leaf = mid.issue(&["mx.example.net"], Validity::Current);
        // The anchor is the root or the intermediate, by certificate or key.
        for rec in [
            root.issued.tlsa(2, 0, 1),
            root.issued.tlsa(2, 1, 1),
            mid.issued.tlsa(2, 0, 1),
            mid.issued.tlsa(2, 1, 2),
        ] {
            assert!(
                check(
                    std::slice::from_ref(&rec),
                    &leaf,
                    &[&mid.issued, &root.issued]
                )
                .is_ok(),
                "{rec}"
            );
        }
        // The anchor must be in the chain the server sends (RFC 7672 3.2.1)...
        assert_eq!(
            check(&[root.issued.tlsa(2, 0, 1)], &leaf, &[&mid.issued]),
            Err(Failure::NoMatch)
        );
        // ...unless the record carries the whole certificate (2 0 0).
        assert!(check(&[root.issued.tlsa(2, 0, 0)], &leaf, &[&mid.issued]).is_ok());

        // The recipient domain is a reference identifier too; a wildcard covers one label.
        let for_domain = mid.issue(&["example.com"], Validity::Current);
        assert!(check(&[mid.issued.tlsa(2, 0, 1)], &for_domain, &[&mid.issued]).is_ok());
        let wildcard = mid.issue(&["*.example.net"], Validity::Current);
        assert!(check(&[mid.issued.tlsa(2, 0, 1)], &wildcard, &[&mid.issued]).is_ok());
        let wrong = mid.issue(&["mx.example.org"], Validity::Current);
        assert_eq!(
            check(&[mid.issued.tlsa(2, 0, 1)], &wrong, &[&mid.issued]),
            Err(Failure::NameMismatch)
        );
        for validity in [Validity::Expired, Validity::Future] {
            let old = mid.issue(&["mx.example.net"], validity);
            assert!(matches!(
                check(&[mid.issued.tlsa(2, 0, 1)], &old, &[&mid.issued]),
                Err(Failure::Expired(_))
            ));
        }
        // A leaf from another CA, with the anchor's certificate appended to its chain.
        let forger = Ca::root("Forger");
        let forged = forger.issue(&["mx.example.net"], Validity::Current);
        assert!(matches!(
            check(&[mid.issued.tlsa(2, 0, 1)], &forged, &[&mid.issued]),
            Err(Failure::NotTrusted(_))
        ));
    }

    /// Relaxed (`TLS-Required: No`), a mismatch is found and kept but does not fail the
    /// handshake.
    #[test]
    fn relaxed_keeps_the_verdict_without_failing() {
        let leaf = dane_certs::self_signed(&["mx.example.net"], Validity::Current);
        let other = dane_certs::self_signed(&["mx.example.net"], Validity::Current);
        let v = DaneVerifier::new(vec![tlsa(&other.tlsa(3, 1, 1))], &NAMES).relaxed();
        let name = ServerName::try_from("mx.example.net").unwrap();
        assert!(v
            .verify_server_cert(&leaf.cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert_eq!(v.verdict(), Verdict::Failed(Failure::NoMatch));
        let strict = DaneVerifier::new(vec![tlsa(&other.tlsa(3, 1, 1))], &NAMES);
        assert!(strict
            .verify_server_cert(&leaf.cert, &[], &name, &[], UnixTime::now())
            .is_err());
    }

    /// A real handshake: the verifier is what rustls consults, and its verdict is kept.
    #[tokio::test]
    async fn a_handshake_succeeds_or_fails_with_the_verdict() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let leaf = dane_certs::self_signed(&["mx.example.net"], Validity::Current);
        let other = dane_certs::self_signed(&["mx.example.net"], Validity::Current);
        for (record, ok) in [(leaf.tlsa(3, 1, 1), true), (other.tlsa(3, 1, 1), false)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(dane_certs::server_config(&leaf, &[]));
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"220 ok\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
            let (config, verifier) = DaneVerifier::new(vec![tlsa(&record)], &NAMES).client_config();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("mx.example.net").unwrap();
            let result = match tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
            {
                Ok(mut tls) => {
                    let mut buf = [0u8; 8];
                    tls.read_exact(&mut buf).await.map(|_| ())
                }
                Err(e) => Err(e),
            };
            server.await.unwrap();
            assert_eq!(result.is_ok(), ok, "{result:?}");
            match verifier.verdict() {
                Verdict::Matched(r) => assert!(ok && r.eq_ignore_ascii_case(&record)),
                Verdict::Failed(f) => assert!(!ok && f == Failure::NoMatch),
                Verdict::Unchecked => panic!("no verdict"),
            }
        }
    }
}

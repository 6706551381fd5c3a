//! A certificate authority made in the test (rcgen): its certificate as a PEM file to trust
//! (`delivery.ca_file`), and certificates it issues for given host names — current, expired,
//! or for the wrong name — as PEM files and as rustls server configurations.
//!
//! Declared once in tests/e2e/main.rs; use it as `crate::test_ca`.
#![allow(dead_code)]

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    dir: tempfile::TempDir,
}

/// A certificate the CA issued, with its key, as files.
pub struct Issued {
    /// The certificate followed by the CA's (a full chain, as servers send it).
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dkim-relay test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("CA dir");
        let ca_pem = cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            ca_pem,
            dir,
        }
    }

    /// The CA certificate as a PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate for `names`, valid now.
    pub fn issue(&self, label: &str, names: &[&str]) -> Issued {
        self.issue_with(label, names, false)
    }

    /// A certificate for `names` that expired yesterday.
    pub fn issue_expired(&self, label: &str, names: &[&str]) -> Issued {
        self.issue_with(label, names, true)
    }

    fn issue_with(&self, label: &str, names: &[&str], expired: bool) -> Issued {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let at = |unix: i64| {
            rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(unix as u64)
        };
        if expired {
            params.not_before = at(now - 30 * 86_400);
            params.not_after = at(now - 86_400);
        } else {
            params.not_before = at(now - 86_400);
            params.not_after = at(now + 30 * 86_400);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let chain = self.dir.path().join(format!("{label}.pem"));
        let key_file = self.dir.path().join(format!("{label}.key"));
        std::fs::write(&chain, format!("{}{}", cert.pem(), self.ca_pem)).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        Issued {
            chain,
            key: key_file,
        }
    }

    /// A TLS server configuration presenting `issued`.
    pub fn server_config(issued: &Issued, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&issued.chain)
            .expect("chain")
            .collect::<Result<_, _>>()
            .expect("chain parses");
        let key = PrivateKeyDer::from_pem_file(&issued.key).expect("key parses");
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

//! Certificates for the DANE tests, made with rcgen: a root CA, intermediate CAs, server
//! certificates (for given names; current, expired or not yet valid; from a CA or self-signed),
//! and the TLSA record data that matches a certificate, computed from rcgen's own encoding of
//! the key (not from the code under test).
//!
//! Declared once in tests/e2e/main.rs; use it as `crate::dane_certs`.
#![allow(dead_code)]

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// When a certificate is valid.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Current,
    /// Ended yesterday.
    Expired,
    /// Starts tomorrow.
    Future,
}

/// A certificate with its key and what a TLSA record says about it.
pub struct Issued {
    pub cert: CertificateDer<'static>,
    /// DER SubjectPublicKeyInfo, as rcgen encodes the key.
    pub spki: Vec<u8>,
    key: rcgen::KeyPair,
}

impl Issued {
    /// The TLSA record data for `usage selector matching` (e.g. `3 1 1`) over this
    /// certificate: `"3 1 1 <hex>"`.
    pub fn tlsa(&self, usage: u8, selector: u8, matching: u8) -> String {
        let selected: &[u8] = match selector {
            0 => self.cert.as_ref(),
            1 => &self.spki,
            _ => panic!("selector {selector}"),
        };
        let data = match matching {
            0 => selected.to_vec(),
            1 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, selected)
                .as_ref()
                .to_vec(),
            2 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, selected)
                .as_ref()
                .to_vec(),
            _ => panic!("matching {matching}"),
        };
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        format!("{usage} {selector} {matching} {hex}")
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// A certificate authority.
pub struct Ca {
    pub issued: Issued,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// Now plus `days`, as time since the epoch (rcgen's dates are `epoch + duration`).
fn since_epoch(days: i64) -> std::time::Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    std::time::Duration::from_secs((now + days * 86_400) as u64)
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Ca {
        let params = ca_params(name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            issued: issued(cert, key_copy(&key)),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let params = ca_params(name);
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("CA certificate");
        Ca {
            issued: issued(cert, key_copy(&key)),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (the first also as CN).
    pub fn issue(&self, names: &[&str], validity: Validity) -> Issued {
        let params = server_params(names, validity);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        issued(cert, key)
    }
}

/// A self-signed server certificate (not a CA), as many MX hosts with DANE-EE have.
pub fn self_signed(names: &[&str], validity: Validity) -> Issued {
    let params = server_params(names, validity);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    issued(cert, key)
}

/// Write `leaf` and then `chain` as a PEM chain file, and `leaf`'s key as a PEM key file, into
/// `dir` as `<label>.pem` and `<label>.key` (what a server's configuration names).
pub fn write_pem(
    dir: &std::path::Path,
    label: &str,
    leaf: &Issued,
    chain: &[&Issued],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut pem = String::new();
    for c in std::iter::once(leaf).chain(chain.iter().copied()) {
        pem.push_str(&pem_block("CERTIFICATE", c.cert.as_ref()));
    }
    let cert_file = dir.join(format!("{label}.pem"));
    let key_file = dir.join(format!("{label}.key"));
    std::fs::write(&cert_file, pem).expect("write chain");
    std::fs::write(&key_file, leaf.key_pem()).expect("write key");
    (cert_file, key_file)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A TLS server configuration presenting `chain` (leaf first) with `leaf`'s key.
pub fn server_config(leaf: &Issued, chain: &[&Issued]) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = std::iter::once(leaf.cert.clone())
        .chain(chain.iter().map(|c| c.cert.clone()))
        .collect();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, leaf.key())
            .expect("server config"),
    )
}

fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(-30);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(365);
    params
}

fn server_params(names: &[&str], validity: Validity) -> rcgen::CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names.clone()).expect("params");
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let (from, to) = match validity {
        Validity::Current => (-1, 30),
        Validity::Expired => (-30, -1),
        Validity::Future => (1, 30),
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(from);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(to);
    params
}

fn issued(cert: rcgen::Certificate, key: rcgen::KeyPair) -> Issued {
    use rcgen::PublicKeyData;
    Issued {
        cert: cert.der().clone(),
        spki: key.subject_public_key_info(),
        key,
    }
}

fn key_copy(key: &rcgen::KeyPair) -> rcgen::KeyPair {
    rcgen::KeyPair::from_pem(&key.serialize_pem()).expect("key copy")
}

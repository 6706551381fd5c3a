//! TLSA records as SMTP uses them (RFC 7672 3.1): DANE-TA(2) and DANE-EE(3), each with
//! selector Cert(0) or SPKI(1) and matching type Full(0), SHA2-256(1) or SHA2-512(2), are
//! usable; PKIX-TA(0) and PKIX-EE(1) are not (3.1.3: an MTA has no set of CAs its peers agree
//! on), nor are private or unassigned values, nor a digest of the wrong length. Whether a
//! certificate matches a record is decided here; the certificate is taken apart only by
//! webpki (its SubjectPublicKeyInfo), nothing is parsed by hand.

use aws_lc_rs::digest;
use mail_auth::hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector, TLSA};
use rustls_pki_types::CertificateDer;

/// What the record's data stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// DANE-TA(2): a trust anchor (a CA certificate or key) the server's chain must lead to.
    TrustAnchor,
    /// DANE-EE(3): the server's own certificate or key.
    EndEntity,
}

/// Which part of a certificate the data covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Cert(0): the whole certificate (DER).
    Certificate,
    /// SPKI(1): its SubjectPublicKeyInfo (DER).
    PublicKey,
}

/// How the data is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// Full(0): the selected bytes themselves.
    Full,
    Sha256,
    Sha512,
}

/// A usable TLSA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: Usage,
    pub part: Part,
    pub digest: Digest,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// The record, if SMTP can use it.
    pub fn usable(record: &TLSA) -> Option<Tlsa> {
        let usage = match record.cert_usage {
            CertUsage::DaneTa => Usage::TrustAnchor,
            CertUsage::DaneEe => Usage::EndEntity,
            _ => return None,
        };
        let part = match record.selector {
            Selector::Full => Part::Certificate,
            Selector::Spki => Part::PublicKey,
            _ => return None,
        };
        let digest = match record.matching {
            Matching::Raw => Digest::Full,
            Matching::Sha256 => Digest::Sha256,
            Matching::Sha512 => Digest::Sha512,
            _ => return None,
        };
        // A digest of the wrong length can never match: the record is malformed (RFC 7671 4.1
        // counts it unusable), not a reason to fail every handshake.
        let length_ok = match digest {
            Digest::Full => !record.cert_data.is_empty(),
            Digest::Sha256 => record.cert_data.len() == 32,
            Digest::Sha512 => record.cert_data.len() == 64,
        };
        length_ok.then(|| Tlsa {
            usage,
            part,
            digest,
            data: record.cert_data.clone(),
        })
    }

    /// Does `cert` match this record? A certificate webpki cannot read matches nothing.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.part {
            Part::Certificate => cert.as_ref().to_vec(),
            Part::PublicKey => match spki(cert) {
                Some(spki) => spki,
                None => return false,
            },
        };
        match self.digest {
            Digest::Full => selected == self.data,
            Digest::Sha256 => digest::digest(&digest::SHA256, &selected).as_ref() == self.data,
            Digest::Sha512 => digest::digest(&digest::SHA512, &selected).as_ref() == self.data,
        }
    }

    /// The record as a zone file writes it: `3 1 1 0A1B…` (for logs and TLS reports).
    pub fn presentation(&self) -> String {
        let usage = match self.usage {
            Usage::TrustAnchor => 2,
            Usage::EndEntity => 3,
        };
        let part = match self.part {
            Part::Certificate => 0,
            Part::PublicKey => 1,
        };
        let digest = match self.digest {
            Digest::Full => 0,
            Digest::Sha256 => 1,
            Digest::Sha512 => 2,
        };
        format!("{usage} {part} {digest} {}", hex(&self.data))
    }
}

/// Any TLSA record as a zone file writes it, usable or not.
pub fn presentation(record: &TLSA) -> String {
    format!(
        "{} {} {} {}",
        u8::from(record.cert_usage),
        u8::from(record.selector),
        u8::from(record.matching),
        hex(&record.cert_data)
    )
}

/// The DER SubjectPublicKeyInfo of a certificate (webpki reads v1 and v3 certificates here).
pub fn spki(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let anchor = webpki::anchor_from_trusted_cert(cert).ok()?;
    Some(webpki::spki_for_anchor(&anchor).as_ref().to_vec())
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TLSA {
        TLSA::new(usage.into(), selector.into(), matching.into(), data)
    }

    #[test]
    fn usable_for_smtp() {
        let sha256 = vec![7u8; 32];
        for (u, s, m) in [
            (2, 0, 1),
            (2, 1, 1),
            (3, 0, 1),
            (3, 1, 1),
            (3, 1, 0),
            (2, 0, 0),
        ] {
            let data = if m == 1 {
                sha256.clone()
            } else {
                vec![1, 2, 3]
            };
            assert!(
                Tlsa::usable(&record(u, s, m, data)).is_some(),
                "{u} {s} {m}"
            );
        }
        assert!(Tlsa::usable(&record(3, 1, 2, vec![7u8; 64])).is_some());
        // PKIX usages, private and unassigned values, wrong digest lengths.
        for (u, s, m, len) in [
            (0, 0, 1, 32),
            (1, 1, 1, 32),
            (4, 1, 1, 32),
            (255, 1, 1, 32),
            (3, 2, 1, 32),
            (3, 255, 1, 32),
            (3, 1, 3, 32),
            (3, 1, 255, 32),
            (3, 1, 1, 31),
            (3, 1, 2, 32),
            (3, 1, 0, 0),
        ] {
            assert!(
                Tlsa::usable(&record(u, s, m, vec![7u8; len])).is_none(),
                "{u} {s} {m}"
            );
        }
    }

    #[test]
    fn presentation_forms() {
        let r = record(3, 1, 1, vec![0xab; 32]);
        assert_eq!(Tlsa::usable(&r).unwrap().presentation(), presentation(&r));
        assert!(presentation(&r).starts_with("3 1 1 ABABAB"));
        assert_eq!(presentation(&record(1, 0, 0, vec![1, 2])), "1 0 0 0102");
    }
}

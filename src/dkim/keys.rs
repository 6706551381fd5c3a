//! DKIM private keys: loading them from PEM files, and their public halves in the form a DNS
//! record publishes (`p=`: SubjectPublicKeyInfo for RSA, the raw 32 bytes for Ed25519).

use aws_lc_rs::signature::KeyPair;
use mail_auth::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::path::Path;

/// The signature algorithm a key signs with, as written in the `a=` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl KeyAlgorithm {
    /// The `a=` tag value, also the `algorithm` metric label.
    pub fn tag(self) -> &'static str {
        match self {
            KeyAlgorithm::RsaSha256 => "rsa-sha256",
            KeyAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
    /// The `k=` tag value of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            KeyAlgorithm::RsaSha256 => "rsa",
            KeyAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM private key found ({detail})")]
    NotPem { path: String, detail: String },
    #[error("{path}: not a usable RSA or Ed25519 private key")]
    Unsupported { path: String },
    #[error("{path}: RSA key of {bits} bits; DKIM needs at least 2048 (RFC 8301)")]
    TooWeak { path: String, bits: usize },
}

/// A loaded private key with what we need to publish and check it.
pub struct PrivateKey {
    pub algorithm: KeyAlgorithm,
    /// RSA modulus size in bits (256 for Ed25519).
    pub bits: usize,
    /// The `p=` value, decoded: SubjectPublicKeyInfo DER (RSA) or the raw key (Ed25519).
    pub public_key: Vec<u8>,
    pub signing_key: DkimKey,
}

impl PrivateKey {
    /// Load a PEM private key: PKCS#8 (RSA or Ed25519) or PKCS#1 (RSA).
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_pem(&pem, &shown)
    }

    /// Parse a PEM private key; `name` is used in errors.
    pub fn from_pem(pem: &[u8], name: &str) -> Result<PrivateKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::NotPem {
            path: name.to_string(),
            detail: e.to_string(),
        })?;
        let unsupported = || KeyError::Unsupported {
            path: name.to_string(),
        };
        match &der {
            PrivateKeyDer::Pkcs8(p8) => {
                let bytes = p8.secret_pkcs8_der();
                if let Ok(rsa) = aws_lc_rs::rsa::KeyPair::from_pkcs8(bytes) {
                    return Self::rsa(rsa, der.clone_key(), name);
                }
                let ed = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                    .map_err(|_| unsupported())?;
                let public_key = ed.public_key().as_ref().to_vec();
                let signing =
                    Ed25519Key::from_pkcs8_maybe_unchecked_der(bytes).map_err(|_| unsupported())?;
                Ok(PrivateKey {
                    algorithm: KeyAlgorithm::Ed25519Sha256,
                    bits: 256,
                    public_key,
                    signing_key: DkimKey::Ed25519(signing),
                })
            }
            PrivateKeyDer::Pkcs1(p1) => {
                let rsa = aws_lc_rs::rsa::KeyPair::from_der(p1.secret_pkcs1_der())
                    .map_err(|_| unsupported())?;
                Self::rsa(rsa, der.clone_key(), name)
            }
            _ => Err(unsupported()),
        }
    }

    fn rsa(
        pair: aws_lc_rs::rsa::KeyPair,
        der: PrivateKeyDer<'static>,
        name: &str,
    ) -> Result<PrivateKey, KeyError> {
        let bits = pair.public_modulus_len() * 8;
        if bits < 2048 {
            return Err(KeyError::TooWeak {
                path: name.to_string(),
                bits,
            });
        }
        let signing = RsaKey::<Sha256>::from_key_der(der).map_err(|_| KeyError::Unsupported {
            path: name.to_string(),
        })?;
        Ok(PrivateKey {
            algorithm: KeyAlgorithm::RsaSha256,
            bits,
            public_key: rsa_spki(pair.public_key().as_ref()),
            signing_key: DkimKey::Rsa(signing),
        })
    }

    /// The `p=` value as published: base64 of `public_key`.
    pub fn public_key_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.public_key)
    }
}

/// The DKIM TXT value for a public key: `v=DKIM1; k=<type>; p=<base64>`.
pub fn txt_value(algorithm: KeyAlgorithm, public_key_base64: &str) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        algorithm.key_type(),
        public_key_base64
    )
}

/// Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form DKIM records publish (and
/// what `opendkim-genkey` prints).
pub fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALG: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALG.to_vec();
    der_push(&mut inner, 0x03, &bit_string);
    let mut out = Vec::with_capacity(inner.len() + 4);
    der_push(&mut out, 0x30, &inner);
    out
}

/// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo, if `spki` is one (records may publish
/// either form).
pub fn rsa_pkcs1_from_spki(spki: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_read(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (alg_tag, _, rest) = der_read(body)?;
    if alg_tag != 0x30 {
        return None;
    }
    let (bs_tag, bits, _) = der_read(rest)?;
    if bs_tag != 0x03 || bits.first() != Some(&0) {
        return None;
    }
    Some(&bits[1..])
}

fn der_push(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
}

/// (tag, body, rest) of one DER element.
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trip() {
        let pkcs1 = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let spki = rsa_spki(&pkcs1);
        assert_eq!(rsa_pkcs1_from_spki(&spki), Some(&pkcs1[..]));
        let long = vec![7u8; 300];
        assert_eq!(rsa_pkcs1_from_spki(&rsa_spki(&long)), Some(&long[..]));
    }

    #[test]
    fn rejects_garbage() {
        assert!(PrivateKey::from_pem(b"not a key", "x").is_err());
    }
}

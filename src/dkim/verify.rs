//! Self-verification: before the relay says 250, each new signature is checked, as the field
//! that will be sent, against the public half of its key over the exact header section that
//! will be sent, with aws-lc's verifiers. That catches a wrong key, a signature over other
//! bytes, and a DKIM-Signature field serialized differently from what was signed. It does not
//! recompute the body hash: the one-pass signer (`message.rs`) hashes the body once for every
//! selector, and our canonicalizer is pinned to mail-auth's by randomized equality tests
//! (`canon.rs`, `message.rs`) rather than by a second pass at run time.

use super::canon;
use super::keys::{rsa_pkcs1_from_spki, KeyAlgorithm};
use crate::smtp::header::Field;
use aws_lc_rs::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256};

/// Why a new signature failed its own check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfVerifyError {
    #[error("signature does not verify for selector {0}")]
    Signature(String),
    #[error("public key of selector {0} is unusable")]
    Key(String),
}

/// What we know of one signature we made.
pub struct MadeSignature<'a> {
    pub selector: &'a str,
    pub algorithm: KeyAlgorithm,
    pub public_key: &'a [u8],
    pub relaxed_headers: bool,
    /// The field as it will be sent (`DKIM-Signature: ...\r\n`).
    pub header: &'a [u8],
    pub b: &'a [u8],
    pub h: &'a [String],
}

/// Check one signature, as the field that will be sent, over `fields` (the header section that
/// will be sent).
pub fn check(sig: &MadeSignature<'_>, fields: &[Field<'_>]) -> Result<(), SelfVerifyError> {
    let mut data = Vec::with_capacity(1024);
    signed_fields(fields, sig.h, sig.relaxed_headers, &mut data);
    let stripped = canon::without_b_value(sig.header);
    canon::header(&stripped, sig.relaxed_headers, &mut data);
    // The signature field itself is hashed without its final CRLF.
    if data.ends_with(b"\r\n") {
        data.truncate(data.len() - 2);
    }
    let ok = match sig.algorithm {
        KeyAlgorithm::RsaSha256 => {
            let pkcs1 = rsa_pkcs1_from_spki(sig.public_key)
                .ok_or_else(|| SelfVerifyError::Key(sig.selector.to_string()))?;
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1)
                .verify(&data, sig.b)
                .is_ok()
        }
        KeyAlgorithm::Ed25519Sha256 => {
            // RFC 8463: Ed25519 signs the SHA-256 hash of the canonicalized data.
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
            UnparsedPublicKey::new(&ED25519, sig.public_key)
                .verify(digest.as_ref(), sig.b)
                .is_ok()
        }
    };
    if ok {
        Ok(())
    } else {
        Err(SelfVerifyError::Signature(sig.selector.to_string()))
    }
}

/// The canonicalized header fields an `h=` list selects, in its order, appended to `out`.
/// RFC 6376 5.4.2: instances of a name are taken from the bottom up; a name with no instance
/// left contributes nothing.
pub fn signed_fields(fields: &[Field<'_>], h: &[String], relaxed: bool, out: &mut Vec<u8>) {
    let mut used = vec![false; fields.len()];
    for name in h {
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].is(name))
        {
            used[i] = true;
            canon::header(fields[i].raw, relaxed, out);
        }
    }
}

//! `verify`: check every DKIM signature of a message, with keys from DNS or from a local private
//! key file, and say in words why one fails (body hash mismatch, header changed or key mismatch,
//! expired, no key record…). mail-auth does the verification; this module only supplies keys
//! and explanations.

use crate::dkim::independent::KnownKeys;
use crate::dkim::keys::{txt_value, PrivateKey};
use mail_auth::crypto::CryptoError;
use mail_auth::dkim::DkimError;
use mail_auth::dns::Parameters;
use mail_auth::{AuthenticatedMessage, DkimResult, DnsError, Error, MessageAuthenticator};
use std::fmt;

/// A key given on the command line instead of DNS, for signatures of `domain`/`selector`
/// (each `None` matches any).
pub struct LocalKey {
    pub key: PrivateKey,
    pub domain: Option<String>,
    pub selector: Option<String>,
}

impl LocalKey {
    fn applies(&self, d: &str, s: &str) -> bool {
        self.domain
            .as_deref()
            .is_none_or(|x| x.trim_end_matches('.').eq_ignore_ascii_case(d))
            && self.selector.as_deref().is_none_or(|x| x == s)
    }
}

/// The verdict on one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Not checked: `--key` was given for another domain/selector.
    Skipped,
}

/// One signature's result.
#[derive(Debug, Clone)]
pub struct SignatureReport {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    pub verdict: Verdict,
    /// Why it failed (or was skipped), in words.
    pub reason: Option<String>,
}

impl fmt::Display for SignatureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.domain.is_empty() {
            "unparsed signature".to_string()
        } else {
            format!("d={} s={} a={}", self.domain, self.selector, self.algorithm)
        };
        match (&self.verdict, &self.reason) {
            (Verdict::Pass, _) => write!(f, "pass {who}"),
            (Verdict::Fail, Some(r)) => write!(f, "FAIL {who}: {r}"),
            (Verdict::Fail, None) => write!(f, "FAIL {who}"),
            (Verdict::Skipped, r) => write!(f, "skip {who}: {}", r.as_deref().unwrap_or("")),
        }
    }
}

/// Why the message could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("not a message: no header section could be parsed")]
    NotAMessage,
    #[error("the message has no DKIM-Signature header")]
    NoSignature,
}

/// Verify every DKIM signature of `raw`. Keys come from `local` when given for a signature's
/// domain and selector (no DNS is asked for it), else from DNS through `resolver`.
pub async fn verify_message(
    raw: &[u8],
    resolver: &MessageAuthenticator,
    local: Option<&LocalKey>,
) -> Result<Vec<SignatureReport>, VerifyError> {
    let normalized;
    // Messages saved by mail clients and `mail` often have bare LF line ends; the signature was
    // made over CRLF, as sent over SMTP.
    let raw = if !raw.contains(&b'\r') {
        normalized = lf_to_crlf(raw);
        &normalized[..]
    } else {
        raw
    };
    let message = AuthenticatedMessage::parse(raw).ok_or(VerifyError::NotAMessage)?;
    let count = count_signature_fields(raw);
    if count == 0 {
        return Err(VerifyError::NoSignature);
    }

    // The `--key` selector's TXT lookup answered with the key given, so verification with a
    // local key never asks DNS for it; other names (signatures the key is not for) answer "not
    // found" rather than reaching DNS.
    let cache = local.map(|lk| {
        KnownKeys::one(
            &txt_value(lk.key.algorithm, &lk.key.public_key_base64()),
            lk.domain.as_deref().zip(lk.selector.as_deref()),
        )
    });
    let outputs = match &cache {
        Some(cache) => {
            resolver
                .verify_dkim(Parameters::new(&message).with_cache(cache))
                .await
        }
        None => resolver.verify_dkim(Parameters::new(&message)).await,
    };

    let mut reports: Vec<SignatureReport> = outputs
        .iter()
        .map(|out| {
            let (domain, selector, algorithm) = match out.signature() {
                Some(s) => (s.d.clone(), s.s.clone(), algorithm_name(s)),
                None => Default::default(),
            };
            if let Some(lk) = local {
                if !domain.is_empty() && !lk.applies(&domain, &selector) {
                    return SignatureReport {
                        reason: Some(format!(
                            "--key was given for {}, not for this signature",
                            key_target(lk)
                        )),
                        domain,
                        selector,
                        algorithm,
                        verdict: Verdict::Skipped,
                    };
                }
            }
            let (verdict, reason) = match out.result() {
                DkimResult::Pass => (Verdict::Pass, None),
                other => (
                    Verdict::Fail,
                    Some(explain(other, &domain, &selector, local.is_some())),
                ),
            };
            SignatureReport {
                domain,
                selector,
                algorithm,
                verdict,
                reason,
            }
        })
        .collect();
    // mail-auth drops signature fields it cannot parse at all (missing tags, bad base64): they
    // still count as failures, or a broken signature would go unnoticed.
    for _ in reports.len()..count {
        reports.push(SignatureReport {
            domain: String::new(),
            selector: String::new(),
            algorithm: String::new(),
            verdict: Verdict::Fail,
            reason: Some(
                "the DKIM-Signature field is malformed (a required tag is missing or b=/bh= is not base64)"
                    .into(),
            ),
        });
    }
    Ok(reports)
}

/// Exit status for the command: 0 only when every checked signature passed and at least one did.
pub fn all_passed(reports: &[SignatureReport]) -> bool {
    reports.iter().any(|r| r.verdict == Verdict::Pass)
        && reports.iter().all(|r| r.verdict != Verdict::Fail)
}

fn key_target(lk: &LocalKey) -> String {
    format!(
        "d={} s={}",
        lk.domain.as_deref().unwrap_or("*"),
        lk.selector.as_deref().unwrap_or("*")
    )
}

fn algorithm_name(s: &mail_auth::dkim::Signature) -> String {
    use mail_auth::crypto::Algorithm;
    match s.a {
        Algorithm::RsaSha256 => "rsa-sha256".into(),
        Algorithm::RsaSha1 => "rsa-sha1".into(),
        Algorithm::Ed25519Sha256 => "ed25519-sha256".into(),
        Algorithm::MlDsa44 => "mldsa44".into(),
    }
}

/// Words for a non-pass result. mail-auth reports a bad body hash and expiry as `neutral`, a bad
/// signature as `fail`, a missing or broken key record as `permerror`.
pub fn explain(result: &DkimResult, domain: &str, selector: &str, local_key: bool) -> String {
    let record = format!("{selector}._domainkey.{domain}");
    let key_src = if local_key {
        "the --key given".to_string()
    } else {
        format!("the key published at {record}")
    };
    let err = match result {
        DkimResult::Pass => return "pass".into(),
        DkimResult::None => return "no result".into(),
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => e,
    };
    match err {
        Error::Dkim(DkimError::BodyHashMismatch) => {
            "body hash mismatch: the body was changed after signing (a footer added, line ends or transfer encoding rewritten)".into()
        }
        Error::Dkim(DkimError::SignatureExpired) => {
            "expired: the x= time has passed (or is not after t=)".into()
        }
        Error::Crypto(CryptoError::FailedVerification) => format!(
            "signature does not verify: a signed header field was changed after signing, or {key_src} is not the key that signed (key mismatch)"
        ),
        Error::Crypto(CryptoError::IncompatibleAlgorithms) => format!(
            "key mismatch: {key_src} is not of the signature's algorithm"
        ),
        Error::Crypto(CryptoError::MalformedPublicKey) => {
            format!("{key_src} is malformed and cannot be used")
        }
        Error::Dkim(DkimError::PublicKeyRevoked) => {
            format!("key revoked: {record} has an empty p=")
        }
        Error::Dkim(DkimError::AuidMismatch) => {
            "i= is not within d= (or the key record's t=s forbids subdomains)".into()
        }
        Error::Dkim(DkimError::BodyLengthTag) => {
            "the signature has an l= body length tag and is ignored".into()
        }
        Error::Dns(DnsError::RecordNotFound(_)) if !local_key => {
            format!("no key record at {record}")
        }
        Error::Dns(DnsError::InvalidRecordType) => {
            format!("no DKIM key record at {record} (a TXT record exists but is not v=DKIM1)")
        }
        Error::Dns(DnsError::Resolver(e)) => {
            format!("DNS error looking up {record} (temporary): {e}")
        }
        other => other.to_string(),
    }
}

fn count_signature_fields(raw: &[u8]) -> usize {
    let end = find(raw, b"\r\n\r\n").map_or(raw.len(), |i| i + 2);
    let head = &raw[..end];
    let mut n = 0;
    let mut at_line_start = true;
    for (i, &b) in head.iter().enumerate() {
        if at_line_start
            && head.len() - i >= 15
            && head[i..i + 15].eq_ignore_ascii_case(b"dkim-signature:")
        {
            n += 1;
        }
        at_line_start = b == b'\n';
    }
    n
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lf_to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for &b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_signature_fields_in_the_header_only() {
        let m = b"DKIM-Signature: a\r\nX: y\r\ndkim-signature: b\r\n\r\nDKIM-Signature: body\r\n";
        assert_eq!(count_signature_fields(m), 2);
    }

    #[test]
    fn body_hash_words() {
        let r = DkimResult::Neutral(Error::Dkim(DkimError::BodyHashMismatch));
        assert!(explain(&r, "example.com", "s", false).starts_with("body hash mismatch"));
    }
}

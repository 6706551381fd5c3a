//! Self-verification that shares no code with our signer: mail-auth's own verifier
//! (`MessageAuthenticator::verify_dkim`, its own parser, canonicalization and body hash) over
//! the exact bytes that will be sent — the new DKIM-Signature fields followed by the spooled
//! message. The selectors' public keys are handed to it through a pre-loaded DNS cache, so it
//! asks no DNS (any other name answers "no such record" from the cache, never from the
//! network). A bug in our one-pass canonicalizer (`canon.rs`) would sign a wrong body hash and
//! still pass `verify::check`; this check fails it.

use super::keys::{txt_value, KeyAlgorithm};
use super::message::MadeField;
use super::signer::SelectorSigner;
use mail_auth::dkim::DomainKey;
use mail_auth::dns::{DnsCache, NoCache, Parameters, ResolverCache, TxtRecord, TxtRecordParser};
use mail_auth::{AuthenticatedMessage, DkimResult, DnsError, Error, MessageAuthenticator};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Why the independent check refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndependentError {
    #[error("mail-auth cannot parse the message as it will be sent")]
    Unparsable,
    #[error("mail-auth's verifier says {result} for selector {selector}")]
    Failed { selector: String, result: String },
}

/// DKIM key records as DNS would serve them, so that mail-auth's verifier asks no DNS for
/// them: the message's selectors (self-verification), or the key `verify --key` was given.
pub struct KnownKeys {
    records: HashMap<Box<str>, TxtRecord>,
    /// What every other name answers: "no such record", or the one key given for any name.
    otherwise: TxtRecord,
}

impl KnownKeys {
    /// The keys of `signers`, each at its selector's name.
    pub fn new(signers: &[Arc<SelectorSigner>]) -> KnownKeys {
        let records = signers
            .iter()
            .map(|s| (key_name(&s.selector, &s.domain), s.key_record.clone()))
            .collect();
        KnownKeys {
            records,
            otherwise: no_record(),
        }
    }

    /// One key, its TXT `value`: at `selector._domainkey.domain` when `at` is
    /// `(domain, selector)`, at every name when it is `None`.
    pub fn one(value: &str, at: Option<(&str, &str)>) -> KnownKeys {
        match at {
            Some((domain, selector)) => KnownKeys {
                records: HashMap::from([(key_name(selector, domain), record(value))]),
                otherwise: no_record(),
            },
            None => KnownKeys {
                records: HashMap::new(),
                otherwise: record(value),
            },
        }
    }
}

/// `selector._domainkey.domain.`, as mail-auth asks its cache.
fn key_name(selector: &str, domain: &str) -> Box<str> {
    format!(
        "{selector}._domainkey.{}.",
        domain.trim_end_matches('.').to_ascii_lowercase()
    )
    .into_boxed_str()
}

/// A selector's public key as the TXT record that publishes it, parsed as mail-auth parses DNS.
pub(super) fn key_record(algorithm: KeyAlgorithm, public_key: &[u8]) -> TxtRecord {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(public_key);
    record(&txt_value(algorithm, &b64))
}

fn record(value: &str) -> TxtRecord {
    match DomainKey::parse(value.as_bytes()) {
        Ok(k) => TxtRecord::from(k),
        Err(e) => TxtRecord::Error(e),
    }
}

fn no_record() -> TxtRecord {
    TxtRecord::Error(Error::Dns(DnsError::InvalidRecordType))
}

impl ResolverCache<Box<str>, TxtRecord> for KnownKeys {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Every name answers from here, never from a DNS query: a known key with it, any other
        // (a signature the client's message already carried) as `otherwise` says.
        Some(
            self.records
                .get(name)
                .cloned()
                .unwrap_or_else(|| self.otherwise.clone()),
        )
    }

    fn remove<Q>(&self, _: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, _: TxtRecord, _: std::time::Instant) {}
}

impl DnsCache for KnownKeys {
    type Txt = KnownKeys;
    type Mx = NoCache;
    type Ipv4 = NoCache;
    type Ipv6 = NoCache;
    type Ptr = NoCache;

    fn txt(&self) -> Option<&Self::Txt> {
        Some(self)
    }
    fn mx(&self) -> Option<&Self::Mx> {
        None
    }
    fn ipv4(&self) -> Option<&Self::Ipv4> {
        None
    }
    fn ipv6(&self) -> Option<&Self::Ipv6> {
        None
    }
    fn ptr(&self) -> Option<&Self::Ptr> {
        None
    }
}

/// Verify each signature we `made` in `message` (the signature fields followed by the stored
/// bytes) with mail-auth's verifier; ours are told from any the client's message carried by
/// their `b=`. Only `Pass` passes: a wrong body hash is `Neutral`.
pub async fn verify(
    verifier: &MessageAuthenticator,
    keys: &KnownKeys,
    message: &[u8],
    made: &[MadeField],
) -> Result<(), IndependentError> {
    let parsed = AuthenticatedMessage::parse(message).ok_or(IndependentError::Unparsable)?;
    let outputs = verifier
        .verify_dkim(Parameters::new(&parsed).with_cache(keys))
        .await;
    for sig in made {
        let output = outputs.iter().find(|o| {
            o.signature().is_some_and(|s| {
                s.d.eq_ignore_ascii_case(&sig.domain) && s.s == sig.selector && s.b == sig.b
            })
        });
        match output.map(|o| o.result()) {
            Some(DkimResult::Pass) => {}
            other => {
                return Err(IndependentError::Failed {
                    selector: sig.selector.clone(),
                    result: other.map_or_else(|| "nothing".to_string(), |r| format!("{r:?}")),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::message::MessageSigning;
    use crate::dkim::signer::dev_signers;

    async fn check(body_signed: &[u8], body_sent: &[u8]) -> Result<(), IndependentError> {
        let signers = dev_signers(true, None);
        let list = signers.for_from_domain("example.com").unwrap();
        let section = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n";
        let mut s = MessageSigning::new(list);
        s.write_body(body_signed);
        let made = s.finish(section, 1_800_000_000).unwrap();
        let mut message = Vec::new();
        for m in &made {
            message.extend_from_slice(m.header.as_bytes());
        }
        message.extend_from_slice(section);
        message.extend_from_slice(b"\r\n");
        message.extend_from_slice(body_sent);
        let verifier = MessageAuthenticator::new_cloudflare_tls().unwrap();
        verify(&verifier, &KnownKeys::new(list), &message, &made).await
    }

    #[tokio::test]
    async fn our_signatures_pass_and_a_wrong_body_hash_does_not() {
        let body = b"Hello  there \r\n\r\nbye\r\n \r\n";
        assert_eq!(check(body, body).await, Ok(()));
        // The body hash of other bytes: mail-auth says Neutral(BodyHashMismatch).
        let err = check(b"other\r\n", body).await.unwrap_err();
        assert!(
            matches!(&err, IndependentError::Failed { result, .. } if result.contains("BodyHashMismatch")),
            "{err:?}"
        );
    }
}

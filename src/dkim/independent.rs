//! Self-verification that shares no code with our signer: mail-auth's own verifier
//! (`MessageAuthenticator::verify_dkim`, its own parser, canonicalization and body hash) over
//! the exact bytes that will be sent — the new DKIM-Signature fields followed by the spooled
//! message. The selectors' public keys are handed to it through a pre-loaded DNS cache, so it
//! asks no DNS (any other name answers "no such record" from the cache, never from the
//! network). A bug in our one-pass canonicalizer (`canon.rs`) would sign a wrong body hash and
//! still pass `verify::check`; this check fails it.

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

/// One signature we made, as the verifier will see it.
pub struct Ours<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    /// The `b=` value, decoded: tells our signature from one the client's message carried.
    pub b: &'a [u8],
}

/// The TXT records of the message's selectors, as DNS would serve them.
pub struct KnownKeys {
    records: HashMap<Box<str>, TxtRecord>,
}

impl KnownKeys {
    pub fn new(signers: &[Arc<SelectorSigner>]) -> KnownKeys {
        use base64::Engine;
        let records = signers
            .iter()
            .map(|s| {
                let value = format!(
                    "v=DKIM1; k={}; p={}",
                    s.algorithm.key_type(),
                    base64::engine::general_purpose::STANDARD.encode(&s.public_key)
                );
                let record = match DomainKey::parse(value.as_bytes()) {
                    Ok(k) => TxtRecord::from(k),
                    Err(e) => TxtRecord::Error(e),
                };
                let name = format!(
                    "{}._domainkey.{}.",
                    s.selector,
                    s.domain.trim_end_matches('.').to_ascii_lowercase()
                );
                (name.into_boxed_str(), record)
            })
            .collect();
        KnownKeys { records }
    }
}

impl ResolverCache<Box<str>, TxtRecord> for KnownKeys {
    fn get<Q>(&self, name: &Q) -> Option<TxtRecord>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Every name answers from here: ours with its key, any other (a signature the client's
        // message already carried) with "no such record", never with a DNS query.
        Some(
            self.records
                .get(name)
                .cloned()
                .unwrap_or(TxtRecord::Error(Error::Dns(DnsError::InvalidRecordType))),
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

/// Verify each of `ours` in `message` (the signature fields followed by the stored bytes)
/// with mail-auth's verifier. Only `Pass` passes: a wrong body hash is `Neutral`.
pub async fn verify(
    verifier: &MessageAuthenticator,
    keys: &KnownKeys,
    message: &[u8],
    ours: &[Ours<'_>],
) -> Result<(), IndependentError> {
    let parsed = AuthenticatedMessage::parse(message).ok_or(IndependentError::Unparsable)?;
    let outputs = verifier
        .verify_dkim(Parameters::new(&parsed).with_cache(keys))
        .await;
    for sig in ours {
        let output = outputs.iter().find(|o| {
            o.signature().is_some_and(|s| {
                s.d.eq_ignore_ascii_case(sig.domain) && s.s == sig.selector && s.b == sig.b
            })
        });
        match output.map(|o| o.result()) {
            Some(DkimResult::Pass) => {}
            other => {
                return Err(IndependentError::Failed {
                    selector: sig.selector.to_string(),
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
    use crate::dkim::signer::{SelectorSpec, Signers, SigningOptions};
    use std::collections::BTreeMap;

    fn dev_signers() -> Signers {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev-keys");
        let specs = ["dev2026r", "dev2026e"]
            .iter()
            .map(|s| SelectorSpec {
                selector: s.to_string(),
                private_key: dir.join(format!("example.com.{s}.pem")),
            })
            .collect();
        let options = SigningOptions {
            relaxed_headers: true,
            relaxed_body: true,
            expire: None,
        };
        Signers::load(
            &BTreeMap::from([("example.com".to_string(), specs)]),
            options,
        )
        .unwrap_or_else(|_| panic!("dev keys load"))
    }

    async fn check(body_signed: &[u8], body_sent: &[u8]) -> Result<(), IndependentError> {
        let signers = dev_signers();
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
        let ours: Vec<Ours<'_>> = made
            .iter()
            .map(|m| Ours {
                domain: &m.domain,
                selector: &m.selector,
                b: &m.b,
            })
            .collect();
        let verifier = MessageAuthenticator::new_cloudflare_tls().unwrap();
        verify(&verifier, &KnownKeys::new(list), &message, &ours).await
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

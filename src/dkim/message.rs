//! Signing one message as its body streams in, with a single pass over the body for every
//! selector: the body is canonicalized and hashed once per canonicalization (`canon::BodyCanon`,
//! whose output is tested equal to mail-auth's), and each selector's signature is then made
//! over its header fields and that one body hash, with the selector's mail-auth signature
//! template (tags, header list) and key. Each new signature is self-verified (`verify::check`)
//! against the header section that will be sent before it is returned.
//!
//! Why not one mail-auth `DkimSigningStream` per selector: each canonicalizes and hashes the
//! body again, so dual signing (RSA + Ed25519) plus our own check cost three body passes; for
//! large messages those passes, not the signatures, were the signing cost.

use super::canon::BodyCanon;
use super::keys::KeyAlgorithm;
use super::signer::SelectorSigner;
use super::verify::{self, MadeSignature, SelfVerifyError};
use crate::smtp::header::{parse_fields, Field, HeaderError};
use mail_auth::crypto::SigningKey;
use mail_auth::dkim::Canonicalization;
use mail_auth::headers::HeaderWriter;
use std::sync::Arc;

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the header section cannot be read: {0}")]
    Header(HeaderError),
    #[error("none of the signed header fields is present")]
    NoSignedHeaders,
    #[error("selector {selector}: the signature could not be made: {detail}")]
    Crypto { selector: String, detail: String },
    #[error(transparent)]
    SelfVerify(#[from] SelfVerifyError),
}

/// Sign a whole message held in memory (a DSN the relay writes itself) the way a received
/// message is signed: the same one-pass signer, every selector, each signature self-verified.
/// `message` is the header section, the blank line and the body, CRLF throughout.
pub fn sign_message(
    signers: &[Arc<SelectorSigner>],
    message: &[u8],
    now_unix: u64,
) -> Result<Vec<MadeField>, SignError> {
    sign_message_covering(signers, message, now_unix, &[])
}

/// [`sign_message`], the signatures also covering the fields named in `also` (a TLS report's
/// `TLS-Report-Domain` and `TLS-Report-Submitter`, RFC 8460 5.3).
pub fn sign_message_covering(
    signers: &[Arc<SelectorSigner>],
    message: &[u8],
    now_unix: u64,
    also: &[&str],
) -> Result<Vec<MadeField>, SignError> {
    let (header_section, body) = match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(p) => (&message[..p + 2], &message[p + 4..]),
        None => (message, &b""[..]),
    };
    let mut signing = MessageSigning::new(signers);
    signing.also = also.iter().map(|s| s.to_string()).collect();
    signing.write_body(body);
    signing.finish(header_section, now_unix)
}

/// One signature made for a message.
pub struct MadeField {
    pub domain: String,
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    /// The `DKIM-Signature: ...\r\n` field to prepend.
    pub header: String,
    /// Its `b=` value (decoded).
    pub b: Vec<u8>,
}

/// The signing of one message in progress: feed the body, then finish with the header section.
pub struct MessageSigning<'s> {
    signers: &'s [Arc<SelectorSigner>],
    body: BodyHashing,
    /// Fields signed besides the selectors' list.
    also: Vec<String>,
}

/// The body hashes of a message in progress, one per body canonicalization its selectors use:
/// owned, so a body can be hashed on another thread (the re-encoding pass).
pub struct BodyHashing {
    /// [relaxed, simple].
    bodies: [Option<BodyCanon>; 2],
}

impl BodyHashing {
    /// Hashers for the canonicalizations `signers` use.
    pub fn for_signers(signers: &[Arc<SelectorSigner>]) -> BodyHashing {
        let mut bodies = [None, None];
        for s in signers {
            let cb = s.signer.template().cb;
            bodies[slot(cb)].get_or_insert_with(|| BodyCanon::new(cb == Canonicalization::Relaxed));
        }
        BodyHashing { bodies }
    }

    pub fn write(&mut self, chunk: &[u8]) {
        for body in self.bodies.iter_mut().flatten() {
            body.write(chunk);
        }
    }
}

fn slot(c: Canonicalization) -> usize {
    match c {
        Canonicalization::Relaxed => 0,
        Canonicalization::Simple => 1,
    }
}

impl<'s> MessageSigning<'s> {
    pub fn new(signers: &'s [Arc<SelectorSigner>]) -> MessageSigning<'s> {
        MessageSigning {
            signers,
            body: BodyHashing::for_signers(signers),
            also: Vec::new(),
        }
    }

    /// Sign with `signers` over a body hashed elsewhere.
    pub fn with_body(signers: &'s [Arc<SelectorSigner>], body: BodyHashing) -> MessageSigning<'s> {
        MessageSigning {
            signers,
            body,
            also: Vec::new(),
        }
    }

    /// Take the next piece of the body (the bytes after the blank line, as they will be sent).
    pub fn write_body(&mut self, chunk: &[u8]) {
        self.body.write(chunk);
    }

    /// Sign with every selector. `header_section` is the header section as it will be sent
    /// (each field ending in CRLF, without the blank line); `now_unix` becomes `t=`.
    pub fn finish(self, header_section: &[u8], now_unix: u64) -> Result<Vec<MadeField>, SignError> {
        let fields = parse_fields(header_section).map_err(SignError::Header)?;
        let [relaxed, simple] = self.body.bodies;
        let hashes = [
            relaxed.map(BodyCanon::finish),
            simple.map(BodyCanon::finish),
        ];
        let mut made = Vec::with_capacity(self.signers.len());
        let mut data = Vec::with_capacity(2048);
        for s in self.signers {
            let template = s.signer.template();
            let Some(bh) = &hashes[slot(template.cb)] else {
                continue;
            };
            let mut sig = template.clone();
            sig.bh = bh.clone();
            sig.t = now_unix;
            // Before signing, the template's x= is the validity period.
            sig.x = if template.x > 0 {
                now_unix.saturating_add(template.x)
            } else {
                0
            };
            if !fields.iter().any(|f| template.h.iter().any(|h| f.is(h))) {
                return Err(SignError::NoSignedHeaders);
            }
            sig.h = if self.also.is_empty() {
                signed_header_names(&template.h, &fields)
            } else {
                let listed: Vec<String> = template.h.iter().chain(&self.also).cloned().collect();
                signed_header_names(&listed, &fields)
            };
            let relaxed_headers = template.ch == Canonicalization::Relaxed;
            data.clear();
            verify::signed_fields(&fields, &sig.h, relaxed_headers, &mut data);
            // The signature field as hashed: b= empty, canonicalized, no final CRLF.
            sig.write(&mut data, false);
            sig.b = s.key.sign(&data[..]).map_err(|e| SignError::Crypto {
                selector: s.selector.clone(),
                detail: e.to_string(),
            })?;
            let header = sig.to_header();
            verify::check(
                &MadeSignature {
                    selector: &s.selector,
                    algorithm: s.algorithm,
                    public_key: &s.public_key,
                    relaxed_headers,
                    header: header.as_bytes(),
                    b: &sig.b,
                    h: &sig.h,
                },
                &fields,
            )?;
            made.push(MadeField {
                domain: s.domain.clone(),
                selector: s.selector.clone(),
                algorithm: s.algorithm,
                header,
                b: sig.b,
            });
        }
        Ok(made)
    }
}

/// The `h=` list, as mail-auth's signer writes it: the listed fields present in the message,
/// bottom-up (the order verifiers select instances in), then every listed name not matched by
/// a field (absent fields, and the second listing of oversigned ones) so that adding such a
/// field later breaks the signature.
fn signed_header_names(listed: &[String], fields: &[Field<'_>]) -> Vec<String> {
    let mut found = vec![false; listed.len()];
    let mut names = Vec::with_capacity(listed.len() + fields.len());
    for f in fields.iter().rev() {
        if let Some(pos) = listed.iter().position(|h| f.is(h)) {
            found[pos] = true;
            names.push(f.name.to_string());
        }
    }
    names.extend(
        listed
            .iter()
            .zip(found)
            .filter(|(_, found)| !found)
            .map(|(h, _)| h.clone()),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::signer::{SelectorSpec, Signers, SigningOptions};
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn dev_signers(relaxed: bool, expire: Option<Duration>) -> Signers {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev-keys");
        let specs = ["dev2026r", "dev2026e"]
            .iter()
            .map(|s| SelectorSpec {
                selector: s.to_string(),
                private_key: dir.join(format!("example.com.{s}.pem")),
            })
            .collect();
        let options = SigningOptions {
            relaxed_headers: relaxed,
            relaxed_body: relaxed,
            expire,
        };
        Signers::load(
            &BTreeMap::from([("example.com".to_string(), specs)]),
            options,
        )
        .unwrap_or_else(|_| panic!("dev keys load"))
    }

    fn random_message(rng: &mut impl Rng) -> (Vec<u8>, Vec<u8>) {
        const FIELDS: &[&[u8]] = &[
            b"From: Alice <a@example.com>\r\n",
            b"To: b@example.net\r\n",
            b"to:  c@example.net ,\r\n\td@example.net\r\n",
            b"Subject:  Hello\t there  \r\n",
            b"Cc: e@example.org\r\n",
            b"X-Mailer: test\r\n",
            b"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n",
            b"MIME-Version: 1.0\r\n",
            b"Content-Type: text/plain;\r\n charset=utf-8\r\n",
        ];
        const BODY: &[&[u8]] = &[
            b"word ",
            b"a",
            b"  ",
            b"\t",
            b"\r\n",
            b"\r\n\r\n",
            b" \r\n",
            b"line of text\r\n",
        ];
        let mut section = FIELDS[0].to_vec();
        for _ in 0..rng.random_range(0..8) {
            section.extend_from_slice(FIELDS[rng.random_range(1..FIELDS.len())]);
        }
        let mut body = Vec::new();
        for _ in 0..rng.random_range(0..400) {
            body.extend_from_slice(BODY[rng.random_range(0..BODY.len())]);
        }
        (section, body)
    }

    /// With the same t=, every selector's field is byte for byte the one mail-auth's own
    /// one-shot signer makes (RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic), for
    /// both canonicalizations, with and without x=.
    #[test]
    fn fields_equal_mail_auth_one_shot() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (relaxed, expire) in [
            (true, None),
            (false, None),
            (true, Some(Duration::from_secs(7 * 86400))),
        ] {
            let signers = dev_signers(relaxed, expire);
            let Some(list) = signers.for_from_domain("example.com") else {
                panic!("no signers");
            };
            for round in 0..40 {
                let (section, body) = random_message(&mut rng);
                let mut message = section.clone();
                message.extend_from_slice(b"\r\n");
                message.extend_from_slice(&body);
                // t= is the signing second: sign again if mail-auth's signatures straddled a
                // second boundary (the test compares whole fields, t= included).
                let mut theirs: Vec<_> = Vec::new();
                for _ in 0..5 {
                    theirs = list
                        .iter()
                        .map(|s| s.signer.sign(&message).unwrap())
                        .collect();
                    if theirs.iter().all(|s| s.t == theirs[0].t) {
                        break;
                    }
                }
                let t = theirs[0].t;
                let mut ours = MessageSigning::new(list);
                for piece in body.chunks(rng.random_range(1..100)) {
                    ours.write_body(piece);
                }
                let made = ours.finish(&section, t).unwrap();
                assert_eq!(made.len(), 2);
                for (m, sig) in made.iter().zip(&theirs) {
                    assert_eq!(sig.t, t, "mail-auth signed across a second boundary");
                    assert_eq!(
                        m.header,
                        sig.to_header(),
                        "round {round}, relaxed {relaxed}, message {:?}",
                        String::from_utf8_lossy(&message)
                    );
                }
            }
        }
    }

    #[test]
    fn a_message_without_signed_fields_is_refused() {
        let signers = dev_signers(true, None);
        let list = signers.for_from_domain("example.com").unwrap();
        let mut s = MessageSigning::new(list);
        s.write_body(b"hi\r\n");
        assert!(matches!(
            s.finish(b"X-Only: 1\r\n", 1),
            Err(SignError::NoSignedHeaders)
        ));
    }

    #[test]
    fn header_names_bottom_up_then_the_unmatched() {
        let section =
            b"From: a@example.com\r\nTo: b@example.net\r\nTo: c@example.net\r\nX-Other: 1\r\n";
        let fields = parse_fields(section).unwrap();
        let listed: Vec<String> = ["From", "To", "Subject", "From"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            signed_header_names(&listed, &fields),
            ["To", "To", "From", "Subject", "From"]
        );
    }

    /// Extra fields named for signing are covered (h= lists them, and the signature, self-
    /// verified on the way, would break if they changed); the usual list is unchanged.
    #[test]
    fn also_covered_fields_are_signed() {
        let signers = dev_signers(true, None);
        let list = signers.for_from_domain("example.com").unwrap();
        let message = b"From: <postmaster@relay.example.com>\r\nSubject: Report\r\nTLS-Report-Domain: b.example\r\nTLS-Report-Submitter: relay.example.com\r\n\r\nbody\r\n";
        let made = sign_message_covering(
            list,
            message,
            1_795_416_600,
            &["TLS-Report-Domain", "TLS-Report-Submitter"],
        )
        .unwrap();
        for m in &made {
            let h = m
                .header
                .split("h=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            let h = h.replace(['\r', '\n', '\t', ' '], "");
            assert!(h.contains("TLS-Report-Domain"), "{}", m.header);
            assert!(h.contains("TLS-Report-Submitter"), "{}", m.header);
        }
        let plain = sign_message(list, message, 1_795_416_600).unwrap();
        assert!(!plain[0].header.contains("TLS-Report-Domain"));
    }
}

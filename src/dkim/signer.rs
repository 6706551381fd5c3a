//! The signing keys of every configured domain, and the choice of which sign a message: those of
//! the most specific configured domain equal to or a parent of the From domain (relaxed DMARC
//! alignment). Every selector of that domain signs.

use super::keys::{KeyAlgorithm, KeyError, PrivateKey};
use mail_auth::crypto::DkimKey;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::signer::Ready;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The header fields signed when present (and, being listed, protected from being added when
/// absent).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Listed a second time: an extra instance added in transit breaks the signature.
pub const OVERSIGNED_HEADERS: &[&str] = &["From", "Subject", "To", "Cc", "Date", "Reply-To"];

/// One selector's signer.
pub struct SelectorSigner {
    pub domain: String,
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    /// The `p=` bytes, for self-verification and DNS checks.
    pub public_key: Vec<u8>,
    /// The key record as mail-auth's verifier would read it from DNS, parsed once here for the
    /// independent check of every message (`independent::KnownKeys`).
    pub key_record: mail_auth::dns::TxtRecord,
    pub signer: DkimSigner<DkimKey, Ready>,
    /// The same private key again, for `message::MessageSigning`, which signs with the
    /// template of `signer` over a body hash it computes once for every selector (mail-auth
    /// keeps its signer's key private).
    pub key: DkimKey,
}

/// What a domain's configuration gives to build its signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorSpec {
    pub selector: String,
    pub private_key: PathBuf,
}

/// Options shared by all signers.
#[derive(Clone, Copy)]
pub struct SigningOptions {
    pub relaxed_headers: bool,
    pub relaxed_body: bool,
    pub expire: Option<Duration>,
}

/// Every domain's signers.
#[derive(Default)]
pub struct Signers {
    domains: BTreeMap<String, Vec<Arc<SelectorSigner>>>,
}

impl Signers {
    /// Load every key. Errors are returned per selector, with the selector's index, so the
    /// caller can point at the configuration line.
    pub fn load(
        domains: &BTreeMap<String, Vec<SelectorSpec>>,
        options: SigningOptions,
    ) -> Result<Signers, Vec<(String, usize, KeyError)>> {
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        for (domain, specs) in domains {
            let mut list = Vec::new();
            for (i, spec) in specs.iter().enumerate() {
                match load_twice(&spec.private_key) {
                    Ok((key, again)) => {
                        list.push(Arc::new(build(domain, &spec.selector, key, again, options)))
                    }
                    Err(e) => errors.push((domain.clone(), i, e)),
                }
            }
            out.insert(domain.clone(), list);
        }
        if errors.is_empty() {
            Ok(Signers { domains: out })
        } else {
            Err(errors)
        }
    }

    /// The signers for a message whose From domain is `from_domain` (lower case): those of the
    /// most specific configured domain equal to or a parent of it.
    pub fn for_from_domain(&self, from_domain: &str) -> Option<&[Arc<SelectorSigner>]> {
        let mut candidate = from_domain;
        loop {
            if let Some(list) = self.domains.get(candidate) {
                if !list.is_empty() {
                    return Some(list);
                }
            }
            candidate = candidate.split_once('.')?.1;
        }
    }

    pub fn domains(&self) -> impl Iterator<Item = (&String, &Vec<Arc<SelectorSigner>>)> {
        self.domains.iter()
    }
}

/// Read a key file once and parse it into two signing keys (one for mail-auth's signer, one for
/// ours): the keys cannot be cloned.
fn load_twice(path: &std::path::Path) -> Result<(PrivateKey, PrivateKey), KeyError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    Ok((
        PrivateKey::from_pem(&pem, &shown)?,
        PrivateKey::from_pem(&pem, &shown)?,
    ))
}

fn build(
    domain: &str,
    selector: &str,
    key: PrivateKey,
    again: PrivateKey,
    o: SigningOptions,
) -> SelectorSigner {
    let canon = |relaxed| {
        if relaxed {
            Canonicalization::Relaxed
        } else {
            Canonicalization::Simple
        }
    };
    let headers: Vec<&str> = SIGNED_HEADERS
        .iter()
        .chain(OVERSIGNED_HEADERS)
        .copied()
        .collect();
    let mut signer = DkimSigner::from_key(key.signing_key)
        .domain(domain)
        .selector(selector)
        .headers(headers)
        .header_canonicalization(canon(o.relaxed_headers))
        .body_canonicalization(canon(o.relaxed_body));
    if let Some(x) = o.expire {
        signer = signer.expiration(x);
    }
    SelectorSigner {
        domain: domain.to_string(),
        selector: selector.to_string(),
        algorithm: key.algorithm,
        key_record: super::independent::key_record(key.algorithm, &key.public_key),
        public_key: key.public_key,
        signer,
        key: again.signing_key,
    }
}

/// The development keys of `config/dev-keys` (example.com: `dev2026r` RSA, `dev2026e`
/// Ed25519), for tests.
#[cfg(test)]
pub(crate) fn dev_signers(relaxed: bool, expire: Option<Duration>) -> Signers {
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

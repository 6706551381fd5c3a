//! The state of staged key rotations, and what it means for signing. `dkim-relay rotate
//! --domain D` (`tools/rotate.rs`) writes a new key with a fresh selector and prints its TXT
//! record; the rotation is then *pending*. The daemon keeps signing with the configured
//! selectors until DNS serves the new key (checked every `dns.check_interval`); from then on the
//! rotation is *active*: the new selector signs in place of the configured selectors of the same
//! key type, which stay *published but unused* until the grace period ends (mail signed with
//! them may still be verified, or be in a queue somewhere) — then their records can go.
//!
//! The state of each rotation is a small JSON file in `<spool_dir>/rotation/`, written
//! atomically. This file only reads and writes that state and applies it to the configured
//! selectors (given as values): making keys and asking DNS are `tools/rotate.rs`'s.
//! Imports only `dkim` and `smtp` of ours.

use crate::dkim::keys::KeyAlgorithm;
use crate::dkim::signer::SelectorSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One rotation of one domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rotation {
    pub domain: String,
    pub selector: String,
    pub private_key: PathBuf,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// The configured selectors (of the same key type) it replaces.
    pub replaces: Vec<String>,
    pub created: i64,
    /// When DNS was first seen serving the new key; from then on it signs.
    pub activated: Option<i64>,
    pub grace_secs: u64,
}

impl Rotation {
    pub fn is_active(&self) -> bool {
        self.activated.is_some()
    }

    /// When the replaced selectors may be removed from DNS.
    pub fn grace_ends(&self) -> Option<i64> {
        self.activated.map(|a| a + self.grace_secs as i64)
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where rotation state lives, in the spool directory.
pub fn state_dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join("rotation")
}

/// The state file of `domain`'s rotation in `dir`.
pub fn state_file(dir: &Path, domain: &str) -> PathBuf {
    dir.join(format!("{domain}.json"))
}

/// Every rotation in `dir`, by domain. Unreadable files are reported, not fatal.
pub fn load_all(dir: &Path) -> (BTreeMap<String, Rotation>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (out, problems);
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Rotation>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                out.insert(r.domain.clone(), r);
            }
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    (out, problems)
}

/// Write `r` to its state file in `dir`, atomically (temporary file, fsync, rename).
pub fn save(dir: &Path, r: &Rotation) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let target = state_file(dir, &r.domain);
    let tmp = dir.join(format!(".{}.json.tmp", r.domain));
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", target.display()))
}

/// The selectors that sign for each domain: the configured ones, with the active rotations in
/// `dir` applied.
pub fn effective_selectors(
    dir: &Path,
    configured: &BTreeMap<String, Vec<SelectorSpec>>,
) -> BTreeMap<String, Vec<SelectorSpec>> {
    let (rotations, _) = load_all(dir);
    configured
        .iter()
        .map(|(domain, list)| {
            let mut specs = list.clone();
            if let Some(r) = rotations.get(domain) {
                // Once the configuration names the new selector itself, the rotation is done.
                let configured = specs.iter().any(|s| s.selector == r.selector);
                if r.is_active() && !configured {
                    specs.retain(|s| !r.replaces.contains(&s.selector));
                    specs.push(SelectorSpec {
                        selector: r.selector.clone(),
                        private_key: r.private_key.clone(),
                    });
                }
            }
            (domain.clone(), specs)
        })
        .collect()
}

/// A fresh selector name: `s` + the date of `now` + the key type's letter, made unique among
/// `taken`.
pub fn fresh_selector(algorithm: KeyAlgorithm, taken: &[String], now: i64) -> String {
    let (year, month, day) = crate::smtp::date::civil_from_days(now.div_euclid(86_400));
    let letter = match algorithm {
        KeyAlgorithm::RsaSha256 => 'r',
        KeyAlgorithm::Ed25519Sha256 => 'e',
    };
    let base = format!("s{year}{month:02}{day:02}{letter}");
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{base}{n}");
        n += 1;
    }
    candidate
}

/// One selector of a domain and where it stands, for `rotate --status` and the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectorState {
    pub domain: String,
    pub selector: String,
    /// `config` (listed in the configuration) or `rotation` (made by `rotate`).
    pub source: &'static str,
    /// Whether new mail is signed with it.
    pub signing: bool,
    /// The state in words, with what to do next if anything.
    pub state: String,
}

/// Every selector of every configured domain and its state at `t`, with the rotations in
/// `dir`; then the unreadable rotation state files.
pub fn selector_states(
    dir: &Path,
    configured: &BTreeMap<String, Vec<SelectorSpec>>,
    t: i64,
) -> (Vec<SelectorState>, Vec<String>) {
    let (rotations, problems) = load_all(dir);
    let mut out = Vec::new();
    for (domain, list) in configured {
        let r = rotations.get(domain);
        let entry = |selector: &str, source, signing, state: String| SelectorState {
            domain: domain.clone(),
            selector: selector.to_string(),
            source,
            signing,
            state,
        };
        for s in list {
            let replaced = r.filter(|r| r.is_active() && r.replaces.contains(&s.selector));
            let state = match replaced {
                Some(r) => match r.grace_ends() {
                    Some(end) if end > t => format!(
                        "published but unused (replaced by {}); keep its DNS record until {}",
                        r.selector,
                        crate::smtp::date::rfc5322_date(end)
                    ),
                    _ => format!(
                        "retired (replaced by {}); remove its DNS record and its config entry",
                        r.selector
                    ),
                },
                None => "signing".to_string(),
            };
            out.push(entry(&s.selector, "config", replaced.is_none(), state));
        }
        if let Some(r) = r {
            if list.iter().any(|s| s.selector == r.selector) {
                out.push(entry(
                    &r.selector,
                    "rotation",
                    false,
                    "complete: the configuration lists it; its state file can go".to_string(),
                ));
            } else if r.is_active() {
                out.push(entry(
                    &r.selector,
                    "rotation",
                    true,
                    format!(
                        "signing since {}; add it to the configuration",
                        crate::smtp::date::rfc5322_date(r.activated.unwrap_or(0))
                    ),
                ));
            } else {
                out.push(entry(
                    &r.selector,
                    "rotation",
                    false,
                    format!(
                        "pending: waiting for DNS to serve {}._domainkey.{domain}",
                        r.selector
                    ),
                ));
            }
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_fresh() {
        // Mon, 23 Nov 2026.
        let t = 1_795_416_600;
        let a = fresh_selector(KeyAlgorithm::RsaSha256, &[], t);
        assert_eq!(a, "s20261123r");
        let b = fresh_selector(KeyAlgorithm::RsaSha256, std::slice::from_ref(&a), t);
        assert_eq!(b, format!("{a}2"));
        assert_eq!(
            fresh_selector(KeyAlgorithm::Ed25519Sha256, &[a], t),
            "s20261123e"
        );
    }
}

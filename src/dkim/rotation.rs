//! Staged key rotation with manual DNS. `dkim-relay rotate --domain D` writes a new key with a
//! fresh selector and prints its TXT record; the rotation is then *pending*. The daemon keeps
//! signing with the configured selectors until DNS serves the new key (checked every
//! `dns.check_interval`); from then on the rotation is *active*: the new selector signs in place
//! of the configured selectors of the same key type, which stay *published but unused* until
//! the grace period ends (mail signed with them may still be verified, or be in a queue
//! somewhere) — then their records can go.
//!
//! The state of each rotation is a small JSON file in `<spool_dir>/rotation/`, written
//! atomically; `rotate --status` shows each selector's state.

use crate::config::Settings;
use crate::dkim::keys::{KeyAlgorithm, PrivateKey};
use crate::dkim::signer::SelectorSpec;
use crate::tools::keygen::{keygen, KeygenAlgorithm};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where rotation state lives.
pub fn state_dir(settings: &Settings) -> PathBuf {
    settings.spool_dir.join("rotation")
}

fn state_file(dir: &Path, domain: &str) -> PathBuf {
    dir.join(format!("{domain}.json"))
}

/// Every rotation on disk, by domain. Unreadable files are reported, not fatal.
pub fn load_all(settings: &Settings) -> (BTreeMap<String, Rotation>, Vec<String>) {
    let dir = state_dir(settings);
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
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

fn save(dir: &Path, r: &Rotation) -> Result<(), String> {
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

/// The selectors that sign for each domain: the configuration's, with active rotations applied.
pub fn effective_selectors(settings: &Settings) -> BTreeMap<String, Vec<SelectorSpec>> {
    let (rotations, _) = load_all(settings);
    settings
        .dkim
        .domains
        .iter()
        .map(|(domain, list)| {
            let mut specs: Vec<SelectorSpec> = list
                .iter()
                .map(|s| SelectorSpec {
                    selector: s.selector.clone(),
                    private_key: s.private_key.clone(),
                })
                .collect();
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

/// A fresh selector name: `s` + date + the key type's letter, made unique among `taken`.
fn fresh_selector(algorithm: KeyAlgorithm, taken: &[String]) -> String {
    let date = crate::smtp::date::rfc5322_date(now());
    // "Mon, 23 Nov 2026 …" -> 20261123
    let parts: Vec<&str> = date.split_whitespace().collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = parts
        .get(2)
        .and_then(|m| months.iter().position(|x| x == m))
        .map_or(1, |i| i + 1);
    let day: u32 = parts.get(1).and_then(|d| d.parse().ok()).unwrap_or(1);
    let year = parts.get(3).copied().unwrap_or("2026");
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

/// Start a rotation: new key, state `pending`. Returns what to tell the operator.
pub fn start(
    settings: &Settings,
    domain: &str,
    algorithm: KeygenAlgorithm,
    out_dir: Option<&Path>,
    grace: Duration,
) -> Result<String, String> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let configured = settings
        .dkim
        .domains
        .get(&domain)
        .ok_or_else(|| format!("{domain} is not a configured signing domain (dkim.domains)"))?;
    let dir = state_dir(settings);
    let (existing, _) = load_all(settings);
    if let Some(r) = existing.get(&domain) {
        if !r.is_active() {
            return Err(format!("{domain} already has a pending rotation to selector {}; publish its record or remove {}", r.selector, state_file(&dir, &domain).display()));
        }
    }
    // Which configured selectors the new key replaces: those of the same key type.
    let mut taken: Vec<String> = configured.iter().map(|s| s.selector.clone()).collect();
    let mut replaces = Vec::new();
    let mut key_dir = None;
    for s in configured {
        let key = PrivateKey::load(&s.private_key).map_err(|e| e.to_string())?;
        if key.algorithm == algorithm.key_algorithm() {
            replaces.push(s.selector.clone());
        }
        key_dir.get_or_insert_with(|| {
            s.private_key
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        });
    }
    if let Some(r) = existing.get(&domain) {
        taken.push(r.selector.clone());
    }
    let selector = fresh_selector(algorithm.key_algorithm(), &taken);
    let out = out_dir
        .map(Path::to_path_buf)
        .or(key_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    let generated = keygen(&domain, &selector, algorithm, &out).map_err(|e| e.to_string())?;
    let rotation = Rotation {
        domain: domain.clone(),
        selector: selector.clone(),
        private_key: std::fs::canonicalize(&generated.path).unwrap_or(generated.path.clone()),
        algorithm: generated.algorithm.tag().to_string(),
        replaces: replaces.clone(),
        created: now(),
        activated: None,
        grace_secs: grace.as_secs(),
    };
    save(&dir, &rotation)?;
    let mut msg = String::new();
    let _ = write!(msg, "{generated}");
    let _ = writeln!(
        msg,
        "; rotation of {domain}: new selector {selector} is pending. Publish the record above; the relay starts\n; signing with it once DNS serves it{}, and keeps {} published but unused for {} more.",
        if replaces.is_empty() { String::new() } else { format!(" (in place of {})", replaces.join(", ")) },
        if replaces.is_empty() { "nothing".to_string() } else { replaces.join(", ") },
        crate::config::units::format_duration(grace)
    );
    Ok(msg)
}

/// The daemon's pass: activate pending rotations whose key DNS now serves. Returns whether
/// anything changed (the caller then rebuilds its signers).
pub async fn activate_ready(
    settings: &Settings,
    resolver: &mail_auth::MessageAuthenticator,
) -> bool {
    let (rotations, problems) = load_all(settings);
    for p in problems {
        tracing::warn!(problem = %p, "unreadable rotation state");
    }
    let mut changed = false;
    for (domain, mut r) in rotations {
        if r.is_active() || !settings.dkim.domains.contains_key(&domain) {
            continue;
        }
        let check =
            crate::tools::dns_check::check_dkim(resolver, &domain, &r.selector, &r.private_key)
                .await;
        if check.status == crate::tools::dns_check::Status::Fail {
            tracing::info!(domain = %domain, selector = %r.selector, detail = %check.message, "rotation pending: DNS does not serve the new key yet");
            continue;
        }
        r.activated = Some(now());
        match save(&state_dir(settings), &r) {
            Ok(()) => {
                tracing::info!(domain = %domain, selector = %r.selector, replaces = %r.replaces.join(","), "rotation active: DNS serves the new key; signing with it now");
                changed = true;
            }
            Err(e) => tracing::error!(domain = %domain, error = %e, "cannot record rotation state"),
        }
    }
    changed
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

/// Every selector of every configured domain and its state; then the unreadable rotation
/// state files.
pub fn selector_states(settings: &Settings) -> (Vec<SelectorState>, Vec<String>) {
    let (rotations, problems) = load_all(settings);
    let t = now();
    let mut out = Vec::new();
    for (domain, list) in &settings.dkim.domains {
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

/// `rotate --status`: each selector of each domain and its state.
pub fn status(settings: &Settings) -> String {
    let (states, problems) = selector_states(settings);
    let mut out = String::new();
    for s in states {
        let _ = writeln!(
            out,
            "{}\t{}\t({})\t{}",
            s.domain, s.selector, s.source, s.state
        );
    }
    for p in problems {
        let _ = writeln!(out, "warning: {p}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_fresh() {
        let a = fresh_selector(KeyAlgorithm::RsaSha256, &[]);
        assert!(
            a.starts_with('s') && a.ends_with('r') && a.len() == 10,
            "{a}"
        );
        let b = fresh_selector(KeyAlgorithm::RsaSha256, std::slice::from_ref(&a));
        assert_eq!(b, format!("{a}2"));
    }
}

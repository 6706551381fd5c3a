//! `dkim-relay rotate`: start a staged key rotation (a new key, its record to publish) or show
//! every selector's state; and the daemon's pass that activates a pending rotation once DNS
//! serves its key (checked like `dns-check` does). The state itself, and what it changes in
//! signing, is `dkim::rotation`'s.

use super::keygen::{keygen, KeygenAlgorithm};
use crate::config::Settings;
use crate::dkim::keys::PrivateKey;
use crate::dkim::rotation::{
    fresh_selector, load_all, now, save, selector_states, state_dir, state_file, Rotation,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    let dir = state_dir(&settings.spool_dir);
    let (existing, _) = load_all(&dir);
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
    let selector = fresh_selector(algorithm.key_algorithm(), &taken, now());
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
    let dir = state_dir(&settings.spool_dir);
    let (rotations, problems) = load_all(&dir);
    for p in problems {
        tracing::warn!(problem = %p, "unreadable rotation state");
    }
    let mut changed = false;
    for (domain, mut r) in rotations {
        if r.is_active() || !settings.dkim.domains.contains_key(&domain) {
            continue;
        }
        let check =
            super::dns_check::check_dkim(resolver, &domain, &r.selector, &r.private_key).await;
        if check.status == super::dns_check::Status::Fail {
            tracing::info!(domain = %domain, selector = %r.selector, detail = %check.message, "rotation pending: DNS does not serve the new key yet");
            continue;
        }
        r.activated = Some(now());
        match save(&dir, &r) {
            Ok(()) => {
                tracing::info!(domain = %domain, selector = %r.selector, replaces = %r.replaces.join(","), "rotation active: DNS serves the new key; signing with it now");
                changed = true;
            }
            Err(e) => tracing::error!(domain = %domain, error = %e, "cannot record rotation state"),
        }
    }
    changed
}

/// `rotate --status`: each selector of each domain and its state.
pub fn status(settings: &Settings) -> String {
    let (states, problems) = selector_states(
        &state_dir(&settings.spool_dir),
        &crate::core::configured_selectors(settings),
        now(),
    );
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

/// `rotate --domain D [--algorithm A] [--out DIR] [--grace G]` or `rotate --status`; returns
/// the exit status (2 for bad arguments).
pub fn rotate_command(
    domain: Option<&str>,
    algorithm: &str,
    out: Option<&Path>,
    grace: &str,
    status_only: bool,
    config: Option<&Path>,
) -> u8 {
    let path = crate::config::resolve_path(config);
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if status_only {
        print!("{}", status(&settings));
        return 0;
    }
    let (Some(domain), Some(alg)) = (domain, KeygenAlgorithm::parse(algorithm)) else {
        eprintln!("rotate: --domain and a known --algorithm are needed");
        return 2;
    };
    let grace = match crate::config::units::parse_duration(grace) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rotate: --grace: {e}");
            return 2;
        }
    };
    match start(&settings, domain, alg, out, grace) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("rotate: {e}");
            1
        }
    }
}

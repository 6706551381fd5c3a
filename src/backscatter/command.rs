//! `dkim-relay bounce-check`: the one-shot check (`--sender --recipient`, for other MTAs and
//! Sieve filters) and the start of the policy daemon (`--listen`). Both read the relay's
//! configuration file (its `envelope_tagging` section and secrets file), so the host that runs
//! the check needs a copy of both, not the relay's keys or spool.

use super::server::{self, Endpoint, Options};
use super::{Tagging, Verdict};
use crate::config::{KeyPath, Settings};
use std::path::Path;

/// Exit status: the message is acceptable (a valid tag, or nothing to check).
pub const EXIT_ACCEPT: u8 = 0;
/// Exit status: the message is backscatter (untagged, expired or bad tag).
pub const EXIT_BACKSCATTER: u8 = 1;
/// Exit status: the command line is wrong (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: no answer possible: the configuration or the secrets file cannot be used.
pub const EXIT_CONFIG: u8 = 3;

/// The configuration's `envelope_tagging` with its secrets, every problem in one message
/// (each line `file:line:col: key: what`).
pub fn load(config: &Path) -> Result<Tagging, String> {
    load_settings(config).map(|(_, t)| t)
}

fn load_settings(config: &Path) -> Result<(Settings, Tagging), String> {
    let settings = Settings::load(config).map_err(|e| e.to_string())?;
    let Some(conf) = &settings.envelope_tagging else {
        return Err(format!(
            "{}: no envelope_tagging section: bounce-check has no domain to check \
             (see docs/backscatter.md)",
            config.display()
        ));
    };
    let tagging = Tagging::load(conf).map_err(|e| {
        let at = KeyPath::default()
            .key("envelope_tagging")
            .key("secret_file");
        settings.origin.error(&at, e).to_string()
    })?;
    Ok((settings, tagging))
}

/// `bounce-check --sender S --recipient R`: print the verdict, return the exit status.
pub fn one_shot(
    config: &Path,
    sender: &str,
    recipient: &str,
    client: Option<std::net::IpAddr>,
) -> u8 {
    if recipient.trim().is_empty() {
        eprintln!("bounce-check: --recipient is empty");
        return EXIT_USAGE;
    }
    let tagging = match load(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let verdict = tagging.check(sender, recipient, client, super::unix_now());
    println!("{}: {}", label(verdict), verdict.describe());
    if verdict.is_backscatter() {
        EXIT_BACKSCATTER
    } else {
        EXIT_ACCEPT
    }
}

fn label(v: Verdict) -> &'static str {
    match v {
        Verdict::NotChecked => "not-checked",
        Verdict::TrustedSource => "trusted-source",
        Verdict::Valid => "valid",
        Verdict::Untagged => "untagged",
        Verdict::Expired => "expired",
        Verdict::BadTag => "bad-tag",
    }
}

/// `bounce-check --listen ...`: run the policy daemon until SIGTERM. Exit status 0 after a
/// clean stop, [`EXIT_USAGE`] for bad arguments, [`EXIT_CONFIG`] for an unusable
/// configuration, 1 when it cannot start otherwise (a socket that cannot be bound).
pub fn daemon(config: &Path, listen: &[String], socket_mode: &str, metrics: Option<&str>) -> u8 {
    let mut endpoints = Vec::new();
    for l in listen {
        match Endpoint::parse(l) {
            Ok(e) => endpoints.push(e),
            Err(e) => {
                eprintln!("bounce-check: --listen: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let mode = match u32::from_str_radix(socket_mode.trim(), 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            eprintln!(
                "bounce-check: --socket-mode: '{socket_mode}' is not an octal mode like 0660"
            );
            return EXIT_USAGE;
        }
    };
    let metrics = match metrics.map(|m| m.trim().parse()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            eprintln!("bounce-check: --metrics: not ip:port (e.g. 127.0.0.1:9188)");
            return EXIT_USAGE;
        }
    };
    let (settings, tagging) = match load_settings(config) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    crate::logging::init(settings.log.format, &settings.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bounce-check: cannot start the runtime: {e}");
            return 1;
        }
    };
    let options = Options {
        config: config.to_path_buf(),
        reload: load,
        listen: endpoints,
        socket_mode: mode,
        metrics,
    };
    match runtime.block_on(server::run(options, tagging)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bounce-check: {e}");
            1
        }
    }
}

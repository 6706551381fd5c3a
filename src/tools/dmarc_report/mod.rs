//! `dkim-relay dmarc-report FILE…`: the "ready for `p=reject`?" report. Reads DMARC aggregate
//! reports (XML, gzip, zip), adds them up per policy domain and source address, marks the
//! sources that are this relay (its `public_addresses`, else what `hostname` resolves to, and
//! its configured d=/s= pairs), and says per domain whether `p=reject` would drop mail that
//! looks legitimate, and what to do about each such source.
//!
//! Layout: `input` (files, gzip, zip, size caps) → `parse` (XML → `Report`) → `analyze` and
//! `source` (aggregation, classification, verdict) → `render` (text, JSON). `model` holds the
//! plain data they pass along and imports none of them, so the stages form no cycle. Uses
//! `config` and `resolver` only; nothing here touches the SMTP, spool or delivery modules.

mod analyze;
mod input;
mod model;
mod parse;
mod render;
mod source;

pub use analyze::analyze;
pub use input::{load_bytes, load_file, InputError, Loaded, MAX_REPORT_BYTES, MAX_ZIP_ENTRIES};
pub use model::{
    utc_date, DkimAuth, DomainSummary, FileError, PolicyPublished, Record, RelayIdentity, Report,
    SignatureSeen, Source, SourceKind, SpfAuth, SpfSeen, Verdict,
};
pub use parse::{parse_report, ParseError};
pub use render::{render_json, render_text};

use crate::config::{resolve_path, Settings};
use mail_auth::dns::NoCache;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Exit status: every file was read (whatever the verdict).
pub const EXIT_OK: u8 = 0;
/// Exit status: a file, or a record in one, could not be read; or the config could not.
pub const EXIT_FAIL: u8 = 1;

/// Every report of every file, duplicates dropped, and what could not be read.
pub struct Collected {
    pub reports: Vec<Report>,
    pub errors: Vec<FileError>,
    /// Reports seen twice (the same reporter and report id), left out of the counts.
    pub duplicates: Vec<String>,
}

/// Read all files. A report whose (reporter, report id) was already read is counted once:
/// operators often save both the `.zip` and its extracted `.xml`.
pub fn collect(files: &[PathBuf]) -> Collected {
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    let mut out = Collected {
        reports: Vec::new(),
        errors: Vec::new(),
        duplicates: Vec::new(),
    };
    for file in files {
        for Loaded { label, report } in load_file(file) {
            let report = match report {
                Ok(r) => r,
                Err(e) => {
                    out.errors.push(FileError {
                        file: label,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            for problem in &report.problems {
                out.errors.push(FileError {
                    file: label.clone(),
                    error: format!("{problem} (record left out)"),
                });
            }
            if !report.report_id.is_empty() {
                let key = (report.org_name.clone(), report.report_id.clone());
                if let Some(first) = seen.get(&key) {
                    out.duplicates.push(format!(
                        "{label}: report {} from {} already read from {first}; counted once",
                        report.report_id, report.org_name
                    ));
                    continue;
                }
                seen.insert(key, label.clone());
            }
            out.reports.push(report);
        }
    }
    out
}

/// Who "this relay" is, from the configuration. An explicit `-c` that cannot be loaded is an
/// error; a missing default config only means no source can be recognised as the relay.
pub fn relay_identity(config: Option<&Path>) -> Result<RelayIdentity, String> {
    let path = resolve_path(config);
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) if config.is_some() => return Err(e.to_string()),
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().next().unwrap_or_default().to_string();
            return Ok(RelayIdentity {
                notes: vec![format!(
                    "no usable configuration ({why}): no source can be recognised as this relay (give -c FILE)"
                )],
                ..RelayIdentity::default()
            });
        }
    };
    let signing: BTreeMap<String, Vec<String>> = settings
        .dkim
        .domains
        .iter()
        .map(|(d, sels)| {
            (
                model::normalize_domain(d),
                sels.iter()
                    .map(|s| s.selector.to_ascii_lowercase())
                    .collect(),
            )
        })
        .collect();
    let mut identity = RelayIdentity {
        signing,
        ..RelayIdentity::default()
    };
    match &settings.public_addresses {
        Some(list) => identity.addresses = list.clone(),
        None => match resolve_hostname(&settings) {
            Ok(list) => identity.addresses = list,
            Err(note) => identity.notes.push(note),
        },
    }
    Ok(identity)
}

/// What `hostname` resolves to (A and AAAA), through the configured resolver.
fn resolve_hostname(settings: &Settings) -> Result<Vec<IpAddr>, String> {
    let host = settings.hostname.as_str();
    let unknown = |why: String| {
        format!("public_addresses is not set and {why}: the relay is recognised only by its signatures (set public_addresses)")
    };
    let resolver = crate::resolver::build(settings.dns.nameservers.as_deref()).map_err(unknown)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unknown(format!("no async runtime ({e})")))?;
    let addresses = runtime.block_on(async {
        let mut out: Vec<IpAddr> = Vec::new();
        if let Ok(v4) = resolver.ipv4_lookup(host, None::<&NoCache>).await {
            out.extend(v4.records.iter().map(|a| IpAddr::V4(*a)));
        }
        if let Ok(v6) = resolver.ipv6_lookup(host, None::<&NoCache>).await {
            out.extend(v6.records.iter().map(|a| IpAddr::V6(*a)));
        }
        out
    });
    if addresses.is_empty() {
        Err(unknown(format!("hostname {host} does not resolve")))
    } else {
        Ok(addresses)
    }
}

/// `dmarc-report [-c FILE] [--format text|json] FILE…`: print the report; exit 0 when every
/// file was read, 1 when one could not be (each named on stderr) or the config is unusable.
pub fn command(files: &[PathBuf], config: Option<&Path>, json: bool) -> u8 {
    let relay = match relay_identity(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAIL;
        }
    };
    let collected = collect(files);
    let domains = analyze(&collected.reports, &relay);
    if json {
        print!(
            "{}",
            render_json(&domains, &relay, collected.reports.len(), &collected.errors)
        );
    } else {
        print!("{}", render_text(&domains, &relay));
    }
    for d in &collected.duplicates {
        eprintln!("dmarc-report: {d}");
    }
    for e in &collected.errors {
        eprintln!("dmarc-report: {}: {}", e.file, e.error);
    }
    if collected.errors.is_empty() {
        EXIT_OK
    } else {
        let n = collected.errors.len();
        eprintln!(
            "dmarc-report: {n} problem{} above; what {} left out of the report",
            if n == 1 { "" } else { "s" },
            if n == 1 {
                "it names is"
            } else {
                "they name is"
            }
        );
        EXIT_FAIL
    }
}

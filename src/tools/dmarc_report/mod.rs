//! `dkim-relay dmarc-report FILE…`: the "ready for `p=reject`?" report. Reads DMARC aggregate
//! reports (XML, gzip, zip), adds them up per policy domain and source address, marks the
//! sources that are this relay (its `public_addresses`, else what `hostname` resolves to, and
//! its configured d=/s= pairs), and says per domain whether `p=reject` would drop mail that
//! looks legitimate, and what to do about each such source.
//!
//! Layout: `mailbox` (what an input is: report file, message, mbox, Maildir, directory) and
//! `imap` (a mailbox on a server) → `mail` (the report parts of a message) → `input` (gzip,
//! zip, size caps) → `parse` (XML → `Report`) → `collect` (once each, `--since`) → `analyze`
//! and `source` (aggregation, classification, verdict) → `render` (text, JSON) and `html` with
//! `svg` (the page). `model` holds the plain data they pass along and imports none of them,
//! so the stages form no cycle. Uses
//! `config`, `resolver`, `trust` and `smtp::url` only; nothing here touches the SMTP session,
//! spool or delivery modules.

mod analyze;
mod collect;
mod html;
mod imap;
mod input;
mod mail;
mod mailbox;
mod model;
mod parse;
mod render;
mod small;
mod source;
mod svg;

// What tests/e2e/dmarc_report.rs reads reports and analyses them with.
pub use analyze::analyze;
pub use input::{load_bytes, load_file};
pub use model::RelayIdentity;
pub use parse::parse_report;

use crate::smtp::date::parse_day;
use collect::{Collected, Collector};
use html::render_html;
use imap::ImapSource;
use mailbox::read_input;
use render::{render_json, render_text};

use super::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::config::{resolve_path, Settings};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    /// One self-contained page with the charts.
    Html,
}

/// The command line of `dmarc-report`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Report files, messages, mboxes, Maildirs, directories.
    pub inputs: Vec<PathBuf>,
    pub config: Option<PathBuf>,
    pub format: Format,
    /// Write here (replaced whole, never left half-written) instead of standard output.
    pub out: Option<PathBuf>,
    /// `YYYY-MM-DD`: reports of earlier days are left out.
    pub since: Option<String>,
    /// `imaps://USER@HOST[:PORT]/MAILBOX`: read that mailbox too (without changing it).
    pub imap: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A CA certificate (or the server's own self-signed one) to trust for `--imap`.
    pub ca_file: Option<PathBuf>,
}

/// Read every input of `options` into one collection.
pub fn collect(
    options: &Options,
    relay: &RelayIdentity,
    since: Option<i64>,
    imap: Option<(&ImapSource, &imap::ImapLogin)>,
) -> Collected {
    let mut collector = Collector::new(relay, since);
    for input in &options.inputs {
        read_input(input, &mut collector);
    }
    if let Some((source, login)) = imap {
        imap::read_mailbox(source, login, &mut collector);
    }
    collector.finish()
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
    let addresses = crate::resolver::build(settings.dns.nameservers.as_deref()).and_then(|r| {
        crate::tools::cli::runtime()?
            .block_on(crate::tools::dns_check::public_addresses(&settings, &r))
    });
    match addresses {
        Ok(list) => identity.addresses = list,
        Err(e) => identity.notes.push(format!(
            "{e}; until then the relay is recognised only by its signatures"
        )),
    }
    Ok(identity)
}

/// `dmarc-report`: write the report; exit 0 ([`EXIT_OK`]) when every input was read, whatever
/// the verdict; 1 ([`EXIT_FAIL`]) when one, or a record in one, could not be (each named on
/// stderr), or the config is unusable, or the output could not be written; 2 ([`EXIT_USAGE`])
/// for a bad command line (a `--since` that is not a date). A closed standard output (`| head`)
/// ends it quietly, as every command (`cli_io`).
pub fn command(options: &Options) -> u8 {
    let since = match options.since.as_deref().map(|s| (s, parse_day(s))) {
        None => None,
        Some((_, Some(day))) => Some(day),
        Some((text, None)) => {
            warn(&format!("--since {text:?}: not a date (give YYYY-MM-DD)"));
            return EXIT_USAGE;
        }
    };
    let imap = match &options.imap {
        None => None,
        Some(url) => {
            let source = match ImapSource::parse(url) {
                Ok(s) => s,
                Err(e) => {
                    warn(&e);
                    return EXIT_USAGE;
                }
            };
            let password = match imap::password(options.password_file.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    warn(&e);
                    return EXIT_FAIL;
                }
            };
            let login = imap::ImapLogin {
                password,
                ca_file: options.ca_file.clone(),
                since,
            };
            Some((source, login))
        }
    };
    let relay = match relay_identity(options.config.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            warn(&e);
            return EXIT_FAIL;
        }
    };
    let collected = collect(options, &relay, since, imap.as_ref().map(|(s, l)| (s, l)));
    let text = match options.format {
        Format::Json => render_json(
            &collected.domains,
            &relay,
            &collected.summary,
            &collected.errors,
        ),
        Format::Text => render_text(&collected.domains, &relay, &collected.summary),
        Format::Html => render_html(&collected.domains, &relay, &collected.summary),
    };
    let mut status = EXIT_OK;
    match &options.out {
        Some(path) => {
            if let Err(e) = write_whole(path, text.as_bytes()) {
                warn(&format!("cannot write {}: {e}", path.display()));
                status = EXIT_FAIL;
            }
        }
        None => {
            let mut stdout = crate::cli_io::stdout();
            if let Err(e) = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                warn(&format!("cannot write the report: {e}"));
                status = EXIT_FAIL;
            }
        }
    }
    for d in &collected.duplicates {
        warn(d);
    }
    for e in &collected.errors {
        warn(&format!("{}: {}", e.file, e.error));
    }
    if !collected.errors.is_empty() {
        let n = collected.errors.len();
        warn(&format!(
            "{n} problem{} above; what {} left out of the report",
            if n == 1 { "" } else { "s" },
            if n == 1 {
                "it names is"
            } else {
                "they name is"
            }
        ));
        status = EXIT_FAIL;
    }
    status
}

/// One line on stderr. A closed stderr is no reason to stop (nor to panic, as eprintln! would).
fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "dmarc-report: {line}");
}

/// Replace `path` with `bytes`: written to a temporary file beside it, synced, renamed over it,
/// so a reader (a web server publishing the page) never sees half a report.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

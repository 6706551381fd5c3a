//! `dkim-relay tls-report [-c FILE] [--day DAY] [--send]`: one day's TLS reports (RFC 8460),
//! made from the results the relay recorded in the spool (`delivery.tls_reports`). Without
//! `--send` they are printed as a JSON array, one report per recipient domain; with `--send`
//! they go out now, as the daemon sends them shortly after each midnight UTC: to each
//! domain's `_smtp._tls` rua, `https:` posted from here, `mailto:` queued in the spool (signed)
//! and the running relay woken to deliver it. A domain's report goes once per day whoever
//! sends it, so sending a day by hand means the daemon will not send it again. Safe while
//! `serve` runs.

use crate::core::Core;
use crate::tls_policy::report::json::{Report, Submitter};
use crate::tls_policy::report::send::{Sender, Sent};
use crate::tls_policy::report::store::{Day, Store};
use arc_swap::ArcSwap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Exit statuses: 0 done; 1 a report could not be sent (or a domain's record not looked up,
/// tried again by the daemon); 2 the configuration or the spool is unusable.
pub fn run(config: &Path, day: Option<&str>, send: bool) -> u8 {
    match execute(config, day, send, &mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dkim-relay tls-report: {e}");
            2
        }
    }
}

/// `YYYY-MM-DD`, `today` or `yesterday` (UTC); yesterday by default.
pub fn parse_day(s: Option<&str>, now: i64) -> Result<Day, String> {
    let today = Day::of(now);
    match s.map(str::trim) {
        None | Some("yesterday") => Ok(Day(today.0 - 1)),
        Some("today") => Ok(today),
        Some(d) => Day::parse(d).ok_or_else(|| {
            format!("'{d}' is not a day (write YYYY-MM-DD, today or yesterday; days are UTC)")
        }),
    }
}

fn execute(
    config: &Path,
    day: Option<&str>,
    send: bool,
    out: &mut dyn Write,
) -> Result<u8, String> {
    let core = Core::load(config).map_err(|e| e.to_string())?;
    let now = crate::clock::unix_now();
    let day = parse_day(day, now)?;
    let security = &core.settings.delivery.security;
    let submitter = Submitter {
        organization: security.tls_reports.organization.clone(),
        contact: security.tls_reports.contact.clone(),
        hostname: core.settings.hostname.clone(),
    };
    let store = Store::open(&core.settings.spool_dir)
        .map_err(|e| format!("{}: {e}", core.settings.spool_dir.display()))?;
    let w = |r: std::io::Result<()>| r.map_err(|e| format!("cannot write the output: {e}"));
    if !send {
        let results = store.read_day(day).map_err(|e| e.to_string())?;
        let reports: Vec<Report> = results
            .iter()
            .map(|(domain, counts)| Report::build(&submitter, day, domain, counts))
            .collect();
        let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
        w(writeln!(out, "{json}"))?;
        return Ok(0);
    }
    if !security.tls_reports.enabled {
        return Err("delivery.tls_reports is off in the configuration: nothing is sent".into());
    }
    let Some(trust) = core.trust.clone() else {
        return Err("no CA certificates to post reports with (delivery.ca_file)".into());
    };
    let spool = crate::spool::Spool::open(&core.settings.spool_dir).map_err(|e| e.to_string())?;
    let spool_dir = core.settings.spool_dir.clone();
    let resolver = core.resolver.clone();
    let queue = crate::queue::reports::SpoolReports {
        spool,
        live: Arc::new(ArcSwap::from_pointee(core)),
        announce: None,
        metrics: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let sender = Sender {
        resolver: &resolver,
        trust: &trust,
        store: &store,
        submitter: &submitter,
        queue: &queue,
    };
    let sent = runtime
        .block_on(sender.send_day(day, now))
        .map_err(|e| e.to_string())?;
    let mut code = 0;
    let mut queued = false;
    for (domain, outcome) in &sent {
        match outcome {
            Sent::To(list) => {
                for (to, result) in list {
                    match result {
                        Ok(how) => {
                            queued |= how.starts_with("queued");
                            w(writeln!(out, "{domain}: {to}: {how}"))?;
                        }
                        Err(e) => {
                            code = 1;
                            w(writeln!(out, "{domain}: {to}: not sent: {e}"))?;
                        }
                    }
                }
            }
            Sent::NotWanted(why) => w(writeln!(out, "{domain}: no report wanted ({why})"))?,
            Sent::Already => w(writeln!(out, "{domain}: sent before"))?,
            Sent::Later(why) => {
                code = 1;
                w(writeln!(
                    out,
                    "{domain}: its _smtp._tls record could not be looked up ({why}); the relay tries again later"
                ))?;
            }
        }
    }
    if sent.is_empty() {
        w(writeln!(out, "no TLS results recorded for {day}"))?;
    }
    if queued {
        w(writeln!(
            out,
            "{}",
            crate::tools::queue::wake_daemon(&spool_dir)
        ))?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        let now = Day::parse("2026-11-23").unwrap().start() + 3600;
        assert_eq!(parse_day(None, now).unwrap().to_string(), "2026-11-22");
        assert_eq!(
            parse_day(Some("today"), now).unwrap().to_string(),
            "2026-11-23"
        );
        assert_eq!(
            parse_day(Some("2026-01-31"), now).unwrap().to_string(),
            "2026-01-31"
        );
        assert!(parse_day(Some("31/01/2026"), now)
            .unwrap_err()
            .contains("YYYY-MM-DD"));
    }
}

//! The DNS doctor: for each configured signing domain, checks that the published DKIM records
//! match the private keys, that SPF authorizes the relay's outbound addresses (within the
//! 10-lookup limit) and that a DMARC record exists, and says what to change. Used by the
//! `dns-check` command and, periodically, by `serve` (which logs problems and exports
//! `dkim_relay_dns_check_ok{domain,check}`). A failing check never stops mail.

mod dkim;
mod dmarc;
mod spf;
pub(crate) use spf::public_addresses;

use crate::config::Settings;
use crate::resolver::{txt_strings, TxtAnswer};
use mail_auth::MessageAuthenticator;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub(crate) use dkim::check_dkim;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Status {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "warn")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that `{:<4}` aligns the report's columns.
        f.pad(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        })
    }
}

/// What was checked. Its [`label`](Check::label) is the `check` label of the gauge: a small set
/// (`dkim:<selector>` with selectors from the config, `spf`, `dmarc`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    Dkim(String),
    Spf,
    Dmarc,
}

impl Check {
    pub fn label(&self) -> String {
        match self {
            Check::Dkim(selector) => format!("dkim:{selector}"),
            Check::Spf => "spf".to_string(),
            Check::Dmarc => "dmarc".to_string(),
        }
    }
}

impl serde::Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

/// One line of the report. A check may give several lines (SPF: one per address).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    pub domain: String,
    pub check: Check,
    pub status: Status,
    /// What was found and, unless ok, what to change.
    pub message: String,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {} {}: {}",
            self.status,
            self.domain,
            self.check.label(),
            self.message
        )
    }
}

/// Run every check for every configured domain (or only `only_domain`), in config order:
/// DKIM per selector, then SPF, then DMARC. Never fails: problems are results.
pub async fn run_checks(
    settings: &Settings,
    resolver: &MessageAuthenticator,
    only_domain: Option<&str>,
) -> Vec<CheckResult> {
    let only = only_domain.map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase());
    let mut out = Vec::new();
    let mut addresses: Option<Result<Vec<IpAddr>, String>> = None;
    for (domain, selectors) in &settings.dkim.domains {
        if only.as_ref().is_some_and(|o| o != domain) {
            continue;
        }
        for sel in selectors {
            out.push(dkim::check_dkim(resolver, domain, &sel.selector, &sel.private_key).await);
        }
        // Resolved once, for all domains.
        if addresses.is_none() {
            addresses = Some(spf::public_addresses(settings, resolver).await);
        }
        if let Some(addrs) = &addresses {
            out.extend(spf::check_spf(resolver, domain, &settings.hostname, addrs).await);
        }
        out.push(dmarc::check_dmarc(resolver, domain).await);
    }
    out
}

/// One pass of the DNS doctor as `serve` runs it: every check, each problem logged as a
/// warning (a FAIL never stops mail). Returns the results for [`gauge_values`].
pub async fn doctor_pass(settings: &Settings, resolver: &MessageAuthenticator) -> Vec<CheckResult> {
    let results = run_checks(settings, resolver, None).await;
    for r in results.iter().filter(|r| r.status != Status::Ok) {
        tracing::warn!(
            domain = %r.domain,
            check = %r.check.label(),
            status = %r.status,
            "dns check: {}",
            r.message
        );
    }
    results
}

/// The DNS doctor's loop for `serve`: a pass at once, then every `dns.check_interval` of the
/// current config (`settings()` is asked each time, so a reload takes effect), until `shutdown`
/// completes. `publish` gets each pass's results (set the gauges from [`gauge_values`]; reset
/// the gauge vector first if domains or selectors can disappear on reload).
pub async fn doctor_loop<S, P>(
    settings: impl Fn() -> S,
    resolver: &MessageAuthenticator,
    shutdown: impl std::future::Future<Output = ()>,
    mut publish: P,
) where
    S: std::ops::Deref<Target = Settings>,
    P: FnMut(&[CheckResult]),
{
    tokio::pin!(shutdown);
    loop {
        let snapshot = settings();
        let interval = snapshot.dns.check_interval;
        tokio::select! {
            results = doctor_pass(&snapshot, resolver) => publish(&results),
            _ = &mut shutdown => return,
        }
        drop(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut shutdown => return,
        }
    }
}

/// The gauge values: one per (domain, check label), 1 when no line of that check is a FAIL
/// (a warning is still 1: mail flows), 0 otherwise.
pub fn gauge_values(results: &[CheckResult]) -> Vec<(String, String, i64)> {
    let mut map: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in results {
        let v = map.entry((r.domain.clone(), r.check.label())).or_insert(1);
        if r.status == Status::Fail {
            *v = 0;
        }
    }
    map.into_iter().map(|((d, c), v)| (d, c, v)).collect()
}

/// True when any result is a FAIL (`dns-check` then exits 1).
pub fn any_fail(results: &[CheckResult]) -> bool {
    results.iter().any(|r| r.status == Status::Fail)
}

/// The text report: one line per result, then a count.
pub fn render_text(results: &[CheckResult]) -> String {
    let mut s = String::new();
    for r in results {
        s.push_str(&r.to_string());
        s.push('\n');
    }
    let count = |st| results.iter().filter(|r| r.status == st).count();
    s.push_str(&format!(
        "{} ok, {} warn, {} FAIL\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    s
}

/// The JSON report: `{"ok": bool, "results": [{domain, check, status, message}…]}`.
pub fn render_json(results: &[CheckResult]) -> String {
    let v = serde_json::json!({ "ok": !any_fail(results), "results": results });
    format!("{v}\n")
}

fn result(domain: &str, check: Check, status: Status, message: impl Into<String>) -> CheckResult {
    CheckResult {
        domain: domain.to_string(),
        check,
        status,
        message: message.into(),
    }
}

/// `tag=value` pairs of a DKIM/DMARC-style record, whitespace around names and values removed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_collapse_lines_of_one_check() {
        let mk = |check, status| CheckResult {
            domain: "example.com".into(),
            check,
            status,
            message: String::new(),
        };
        let g = gauge_values(&[
            mk(Check::Spf, Status::Ok),
            mk(Check::Spf, Status::Fail),
            mk(Check::Dmarc, Status::Warn),
            mk(Check::Dkim("s1".into()), Status::Ok),
        ]);
        assert_eq!(
            g,
            vec![
                ("example.com".into(), "dkim:s1".into(), 1),
                ("example.com".into(), "dmarc".into(), 1),
                ("example.com".into(), "spf".into(), 0),
            ]
        );
    }
}

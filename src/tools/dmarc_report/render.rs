//! The report as an operator reads it (per domain: the policy, a table of sources by volume with
//! their results, the verdict and what to do) and as JSON for scripts and dashboards.

use super::model::{DomainSummary, FileError, RelayIdentity, RunSummary, Source, SourceKind};
use std::fmt::Write;

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    let tenths = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// The text report.
pub fn render_text(domains: &[DomainSummary], relay: &RelayIdentity, run: &RunSummary) -> String {
    let mut out = String::new();
    let addresses: Vec<String> = relay.addresses.iter().map(|a| a.to_string()).collect();
    let signing: Vec<String> = relay
        .signing
        .iter()
        .map(|(d, s)| format!("{d} (s={})", s.join(", s=")))
        .collect();
    let _ = writeln!(
        out,
        "This relay: addresses {}; signs {}",
        if addresses.is_empty() {
            "unknown".to_string()
        } else {
            addresses.join(", ")
        },
        if signing.is_empty() {
            "nothing".to_string()
        } else {
            signing.join(", ")
        }
    );
    for note in &relay.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    let _ = writeln!(out, "Read: {}", run_line(run));
    if domains.is_empty() {
        let _ = writeln!(out, "\nNo report could be read.");
    }
    for d in domains {
        out.push('\n');
        render_domain(&mut out, d);
    }
    out
}

fn render_domain(out: &mut String, d: &DomainSummary) {
    let p = &d.policy;
    let mut policy = Vec::new();
    for (tag, value) in [
        ("p", &p.p),
        ("sp", &p.sp),
        ("pct", &p.pct),
        ("adkim", &p.adkim),
        ("aspf", &p.aspf),
        ("np", &p.np),
        ("t", &p.testing),
    ] {
        if let Some(v) = value {
            policy.push(format!("{tag}={v}"));
        }
    }
    let _ = writeln!(out, "== {} ==", d.domain);
    let _ = writeln!(
        out,
        "Published policy: {} (latest report)",
        if policy.is_empty() {
            "not reported".to_string()
        } else {
            policy.join(" ")
        }
    );
    let _ = writeln!(
        out,
        "{} messages from {} sources; {} pass DMARC ({})",
        d.messages,
        d.sources.len(),
        d.dmarc_pass,
        percent(d.dmarc_pass, d.messages)
    );
    let o = &d.outcomes;
    let f = &d.failing_dispositions;
    let _ = writeln!(
        out,
        "By outcome: {} through this relay, {} from other authorised senders, {} failing that look legitimate, {} failing that look forged",
        o.relay_pass, o.other_pass, o.fail_legitimate, o.fail_forged
    );
    let _ = writeln!(
        out,
        "Failing mail, as receivers report it: {} delivered anyway (none), {} quarantined, {} rejected",
        f.none, f.quarantine, f.reject
    );
    if !d.sources.is_empty() {
        let width = d
            .sources
            .iter()
            .map(|s| s.ip.to_string().len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "\n  {:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  WHAT",
            "SOURCE", "MESSAGES", "DMARC", "DKIM", "SPF"
        );
        for s in &d.sources {
            render_source(out, s, width);
        }
        let _ = writeln!(
            out,
            "  (DMARC, DKIM, SPF: messages passing; DKIM and SPF count only when aligned with the From domain)"
        );
    }
    let v = &d.verdict;
    let _ = writeln!(out, "\nVerdict: {}", v.summary);
    for a in &v.actions {
        let _ = writeln!(out, "  - {a}");
    }
    if !v.notes.is_empty() {
        let _ = writeln!(out, "Notes:");
        for n in &v.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
}

fn render_source(out: &mut String, s: &Source, width: usize) {
    let _ = writeln!(
        out,
        "  {:<width$}  {:>8}  {:>8}  {:>8}  {:>8}  {}",
        s.ip.to_string(),
        s.messages,
        s.dmarc_pass,
        s.dkim_aligned_pass,
        s.spf_aligned_pass,
        s.kind.label()
    );
    let mut details = Vec::new();
    if !s.header_from.is_empty() {
        details.push(format!("From {}", s.header_from.join(", ")));
    }
    for sig in &s.dkim {
        let sel = if sig.selector.is_empty() {
            "?"
        } else {
            &sig.selector
        };
        let mine = if sig.relay { " (relay)" } else { "" };
        details.push(format!(
            "DKIM {} s={sel}{mine} {}",
            if sig.domain.is_empty() {
                "?"
            } else {
                &sig.domain
            },
            counts(sig.pass, sig.fail)
        ));
    }
    for spf in &s.spf {
        details.push(format!(
            "SPF {} {}",
            if spf.domain.is_empty() {
                "?"
            } else {
                &spf.domain
            },
            counts(spf.pass, spf.fail)
        ));
    }
    let dispositions: Vec<String> = s
        .dispositions
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    details.push(format!("disposition {}", dispositions.join(", ")));
    if !s.override_reasons.is_empty() {
        details.push(format!("reason {}", s.override_reasons.join(", ")));
    }
    let _ = writeln!(out, "  {:<width$}  {}", "", details.join("; "));
    // Blocking sources get their advice in the verdict's list; no need to say it twice.
    if s.kind != SourceKind::ThisRelay && !s.kind.blocks() {
        let _ = writeln!(out, "  {:<width$}  -> {}", "", s.advice);
    }
}

fn counts(pass: u64, fail: u64) -> String {
    match (pass, fail) {
        (p, 0) => format!("pass {p}"),
        (0, f) => format!("fail {f}"),
        (p, f) => format!("pass {p}, fail {f}"),
    }
}

/// What was read, in one line: `4 reports (from 6 e-mail messages; 2 without a report
/// skipped; 1 duplicate counted once)`.
pub fn run_line(run: &RunSummary) -> String {
    let mut parts = Vec::new();
    if run.messages_read > 0 {
        parts.push(format!(
            "from {} e-mail message{}",
            run.messages_read,
            if run.messages_read == 1 { "" } else { "s" }
        ));
    }
    if run.messages_without_report > 0 {
        parts.push(format!(
            "{} without a report skipped",
            run.messages_without_report
        ));
    }
    if run.duplicates > 0 {
        parts.push(format!(
            "{} duplicate{} counted once",
            run.duplicates,
            if run.duplicates == 1 { "" } else { "s" }
        ));
    }
    if let Some(since) = &run.since {
        parts.push(format!("{} before {since} left out", run.before_since));
    }
    let head = format!(
        "{} report{}",
        run.reports_read,
        if run.reports_read == 1 { "" } else { "s" }
    );
    if parts.is_empty() {
        head
    } else {
        format!("{head} ({})", parts.join("; "))
    }
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    relay: &'a RelayIdentity,
    #[serde(flatten)]
    run: &'a RunSummary,
    domains: &'a [DomainSummary],
    errors: &'a [FileError],
}

/// The JSON report: `{"relay", "reports_read", "messages_read", …, "domains": [...],
/// "errors": [...]}`.
pub fn render_json(
    domains: &[DomainSummary],
    relay: &RelayIdentity,
    run: &RunSummary,
    errors: &[FileError],
) -> String {
    let report = JsonReport {
        relay,
        run,
        domains,
        errors,
    };
    match serde_json::to_string_pretty(&report) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Only plain data is serialised; should it ever fail, still print valid JSON.
        Err(e) => format!(
            "{{\"errors\": [{{\"file\": \"\", \"error\": {:?}}}]}}\n",
            e.to_string()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(u64::MAX, u64::MAX), "100.0%");
        assert_eq!(percent(0, 0), "-");
    }
}

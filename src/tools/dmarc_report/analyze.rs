//! From parsed reports to the operator's answer: per policy domain, per source address, how
//! much mail, how it authenticated, whether it is this relay, and what `p=reject` would do.
//!
//! The judgement is a heuristic over what receivers reported, and says so: a source that fails
//! DMARC but authenticates as *something* (SPF passes, a DKIM signature of the domain with a
//! selector that is not the relay's, a signature of its own domain) looks like a legitimate
//! sender that `p=reject` would cut off; a source that authenticates as nothing looks like a
//! forger; a source whose failure the receiver attributes to forwarding, or whose relay
//! signature broke on the way, is a forwarder or mailing list that no routing change fixes.

use super::model::{
    report_day, utc_date, DaySummary, DomainSummary, FailingDispositions, Outcomes,
    PolicyPublished, RelayIdentity, Report, Source, SourceKind, Verdict,
};
use super::source::{classify, SourceAcc};
use crate::smtp::date::day_name;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[derive(Default)]
struct DomainAcc {
    reports: usize,
    reporters: BTreeSet<String>,
    begin: Option<u64>,
    end: Option<u64>,
    /// (report end, policy): the latest report's policy wins.
    policy: Option<(u64, PolicyPublished)>,
    sources: BTreeMap<IpAddr, SourceAcc>,
}

/// Reports added one at a time (already de-duplicated), so that only the running totals stay
/// in memory, not every record read.
pub struct Analysis<'r> {
    relay: &'r RelayIdentity,
    domains: BTreeMap<String, DomainAcc>,
}

impl<'r> Analysis<'r> {
    pub fn new(relay: &'r RelayIdentity) -> Analysis<'r> {
        Analysis {
            relay,
            domains: BTreeMap::new(),
        }
    }

    /// Count one report.
    pub fn add(&mut self, report: &Report) {
        let relay = self.relay;
        let domain = &report.policy.domain;
        let acc = self.domains.entry(domain.clone()).or_default();
        acc.reports += 1;
        let reporter = if report.org_name.is_empty() {
            "(unnamed reporter)".to_string()
        } else {
            report.org_name.clone()
        };
        acc.reporters.insert(reporter.clone());
        acc.begin = min_opt(acc.begin, report.begin);
        acc.end = max_opt(acc.end, report.end);
        let when = report.end.unwrap_or(0);
        if acc.policy.as_ref().is_none_or(|(t, _)| when >= *t) {
            acc.policy = Some((when, report.policy.clone()));
        }
        let day = report_day(report);
        for record in &report.records {
            let source = acc.sources.entry(record.source_ip).or_insert_with(|| {
                SourceAcc::new(record.source_ip, relay.is_relay_address(record.source_ip))
            });
            source.add(record, domain, &reporter, day, relay);
        }
    }

    /// One summary per policy domain, sorted by name.
    pub fn finish(self) -> Vec<DomainSummary> {
        let relay = self.relay;
        self.domains
            .into_iter()
            .map(|(domain, acc)| summarize(domain, acc, relay))
            .collect()
    }
}

/// Aggregate reports (already de-duplicated) into one summary per policy domain, sorted by name.
pub fn analyze(reports: &[Report], relay: &RelayIdentity) -> Vec<DomainSummary> {
    let mut analysis = Analysis::new(relay);
    for report in reports {
        analysis.add(report);
    }
    analysis.finish()
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn summarize(domain: String, acc: DomainAcc, relay: &RelayIdentity) -> DomainSummary {
    let mut days: BTreeMap<Option<i64>, (Outcomes, FailingDispositions)> = BTreeMap::new();
    let mut sources: Vec<Source> = Vec::with_capacity(acc.sources.len());
    for mut s in acc.sources.into_values() {
        let daily = s.take_daily();
        let source = classify(s, &domain, relay);
        let forged = source.kind == SourceKind::Unauthenticated;
        for (day, counts) in daily {
            let (outcomes, failing) = days.entry(day).or_default();
            let fail = counts.failing.total();
            outcomes.add(&Outcomes {
                relay_pass: counts.relay_pass,
                other_pass: counts.other_pass,
                fail_legitimate: if forged { 0 } else { fail },
                fail_forged: if forged { fail } else { 0 },
            });
            failing.add(&counts.failing);
        }
        sources.push(source);
    }
    let mut outcomes = Outcomes::default();
    let mut failing_dispositions = FailingDispositions::default();
    for (o, f) in days.values() {
        outcomes.add(o);
        failing_dispositions.add(f);
    }
    let days: Vec<DaySummary> = days
        .into_iter()
        .filter_map(|(day, (outcomes, failing_dispositions))| {
            Some(DaySummary {
                day: day_name(day?),
                outcomes,
                failing_dispositions,
            })
        })
        .collect();
    sources.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.ip.cmp(&b.ip)));
    let messages = sources
        .iter()
        .fold(0u64, |n, s| n.saturating_add(s.messages));
    let dmarc_pass = sources
        .iter()
        .fold(0u64, |n, s| n.saturating_add(s.dmarc_pass));
    let policy = acc.policy.map(|(_, p)| p).unwrap_or_default();
    let mut summary = DomainSummary {
        relay_signs_for_domain: relay.signs_for(&domain),
        domain,
        policy,
        reports: acc.reports,
        reporters: acc.reporters.into_iter().collect(),
        first_day: acc.begin.map(utc_date),
        last_day: acc.end.map(|e| utc_date(e.saturating_sub(1))),
        messages,
        dmarc_pass,
        outcomes,
        failing_dispositions,
        days,
        sources,
        verdict: Verdict {
            ready: false,
            summary: String::new(),
            actions: Vec::new(),
            notes: Vec::new(),
        },
    };
    summary.verdict = verdict(&summary, relay);
    summary
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn verdict(d: &DomainSummary, relay: &RelayIdentity) -> Verdict {
    let failing = |s: &Source| s.messages.saturating_sub(s.dmarc_pass);
    let total_failing = d.messages.saturating_sub(d.dmarc_pass);
    let blocking: Vec<&Source> = d.sources.iter().filter(|s| s.kind.blocks()).collect();
    let blocked_messages = blocking
        .iter()
        .fold(0u64, |n, s| n.saturating_add(failing(s)));
    let actions: Vec<String> = blocking
        .iter()
        .map(|s| {
            format!(
                "{} ({} failing): {}",
                s.ip,
                plural(failing(s), "message", "messages"),
                s.advice
            )
        })
        .collect();
    let already = d.policy.p.as_deref() == Some("reject");
    let (ready, summary) = if d.messages == 0 {
        (
            false,
            "NO EVIDENCE: these reports hold no messages for this domain.".to_string(),
        )
    } else if blocking.is_empty() {
        let what = if already {
            "already p=reject, and every source that fails DMARC looks illegitimate"
        } else {
            "READY for p=reject on this evidence: every source that fails DMARC looks illegitimate"
        };
        (
            true,
            format!(
                "{what} ({total_failing} of {} would be rejected).",
                plural(d.messages, "message", "messages"),
            ),
        )
    } else {
        let head = if already {
            "p=reject IS DROPPING LEGITIMATE-LOOKING MAIL"
        } else {
            "NOT READY for p=reject"
        };
        (
            false,
            format!(
                "{head}: {} that {} legitimate {} DMARC; {blocked_messages} of {} would be rejected. Fix first:",
                plural(blocking.len() as u64, "source", "sources"),
                if blocking.len() == 1 { "looks" } else { "look" },
                if blocking.len() == 1 { "fails" } else { "fail" },
                plural(d.messages, "message", "messages"),
            ),
        )
    };
    Verdict {
        ready,
        summary,
        actions,
        notes: notes(d, relay),
    }
}

fn notes(d: &DomainSummary, relay: &RelayIdentity) -> Vec<String> {
    let mut notes = Vec::new();
    let sum = |kind: SourceKind| {
        let list: Vec<&Source> = d.sources.iter().filter(|s| s.kind == kind).collect();
        let failing = list.iter().fold(0u64, |n, s| {
            n.saturating_add(s.messages.saturating_sub(s.dmarc_pass))
        });
        (list, failing)
    };
    let (authorized, _) = sum(SourceKind::Authorized);
    if !authorized.is_empty() {
        let ips: Vec<String> = authorized.iter().map(|s| s.ip.to_string()).collect();
        notes.push(format!(
            "{} DMARC without the relay ({}): senders your DNS authorises (their own DKIM key for the domain, or SPF). Make sure you recognise each; if one is not yours, remove its key or SPF entry.",
            if authorized.len() == 1 { "1 source passes".to_string() } else { format!("{} sources pass", authorized.len()) },
            ips.join(", ")
        ));
    }
    let (forwarded, fwd_failing) = sum(SourceKind::Forwarded);
    if !forwarded.is_empty() {
        notes.push(format!(
            "{} from {} failed after forwarding (mailing lists, forwarders that alter messages). p=reject can lose such mail whatever you do; it is not fixed by routing.",
            plural(fwd_failing, "message", "messages"),
            plural(forwarded.len() as u64, "source", "sources"),
        ));
    }
    let (forgers, forged) = sum(SourceKind::Unauthenticated);
    if !forgers.is_empty() {
        notes.push(format!(
            "{} from {} {} as nothing (no SPF pass, no DKIM signature that verifies): most likely forgery, which p=reject stops. If you recognise one of these addresses, it is a server of yours: send its mail through the relay.",
            plural(forged, "message", "messages"),
            plural(forgers.len() as u64, "source", "sources"),
            if forgers.len() == 1 { "that authenticates" } else { "that authenticate" },
        ));
    }
    if !relay.signs_for(&d.domain) {
        notes.push(format!(
            "This relay has no DKIM key for {} (dkim.domains): it cannot sign this domain's mail.",
            d.domain
        ));
    } else if !d
        .sources
        .iter()
        .any(|s| matches!(s.kind, SourceKind::ThisRelay | SourceKind::RelayFailing))
    {
        notes.push(
            "No source in these reports is this relay's address: check public_addresses (or what hostname resolves to), or whether this domain's mail goes through the relay at all."
                .to_string(),
        );
    }
    if d.policy.p.as_deref() == Some("reject")
        && d.policy.pct.as_deref().is_some_and(|p| p != "100")
    {
        notes.push(format!(
            "p=reject applies to pct={}% of failing mail only.",
            d.policy.pct.as_deref().unwrap_or("100")
        ));
    }
    if d.policy.testing.as_deref() == Some("y") {
        notes.push(
            "The policy is in testing mode (t=y): receivers apply one step less than p= (reject as quarantine, quarantine as none)."
                .to_string(),
        );
    }
    let period = match (&d.first_day, &d.last_day) {
        (Some(a), Some(b)) if a == b => format!(" for {a} (UTC)"),
        (Some(a), Some(b)) => format!(" covering {a} to {b} (UTC)"),
        _ => String::new(),
    };
    notes.push(format!(
        "Evidence, not proof: {} from {}{period}. Only receivers that send reports are counted, and a sender that mails rarely (monthly invoices, yearly renewals) may not appear yet.",
        plural(d.reports as u64, "report", "reports"),
        d.reporters.join(", ")
    ));
    notes
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_report;
    use super::*;

    const RELAY_IP: &str = "203.0.113.7";

    /// One record of example.com from `ip` with the given aligned results and auth results.
    fn record(ip: &str, count: u64, dkim_aligned: bool, auth: &str) -> String {
        let pass = |b: bool| if b { "pass" } else { "fail" };
        format!(
            "<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
             <disposition>none</disposition><dkim>{}</dkim><spf>fail</spf></policy_evaluated></row>\
             <identifiers><header_from>example.com</header_from></identifiers>\
             <auth_results>{auth}</auth_results></record>",
            pass(dkim_aligned)
        )
    }

    fn report_of(records: &[String]) -> String {
        format!(
            "<feedback><report_metadata><org_name>r</org_name><report_id>x</report_id></report_metadata>\
             <policy_published><domain>example.com</domain><p>none</p></policy_published>{}</feedback>",
            records.concat()
        )
    }

    fn relay() -> RelayIdentity {
        RelayIdentity {
            addresses: vec![RELAY_IP.parse().expect("ip")],
            signing: BTreeMap::from([("example.com".to_string(), vec!["dev2026r".to_string()])]),
            notes: Vec::new(),
        }
    }

    #[test]
    fn legitimate_looking_failures_block_and_say_what_to_do() {
        let sig = |s: &str, r: &str| {
            format!(
                "<dkim><domain>example.com</domain><selector>{s}</selector><result>{r}</result></dkim>"
            )
        };
        let spf_own = "<spf><domain>bounce.example.com</domain><result>pass</result></spf>";
        let xml = report_of(&[
            record(RELAY_IP, 100, true, &sig("dev2026r", "pass")),
            // The relay's own address failing: its key is not what DNS publishes.
            record(RELAY_IP, 5, false, &sig("dev2026r", "fail")),
            // A helpdesk with its own selector whose record is wrong.
            record("198.51.100.7", 20, false, &sig("hd1", "fail")),
            // A server the domain's SPF lists, sending unsigned mail.
            record("198.51.100.8", 12, false, spf_own),
        ]);
        let report = parse_report(&xml).expect("report");
        let d = &analyze(&[report], &relay())[0];
        let kinds: Vec<(String, SourceKind)> = d
            .sources
            .iter()
            .map(|s| (s.ip.to_string(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (RELAY_IP.to_string(), SourceKind::RelayFailing),
                ("198.51.100.7".to_string(), SourceKind::LegitimateFailing),
                ("198.51.100.8".to_string(), SourceKind::LegitimateFailing),
            ]
        );
        assert!(!d.verdict.ready);
        assert!(d.verdict.summary.starts_with(
            "NOT READY for p=reject: 3 sources that look legitimate fail DMARC; 37 of 137 messages would be rejected."
        ), "{}", d.verdict.summary);
        let actions = d.verdict.actions.join("\n");
        assert!(actions.contains("203.0.113.7 (5 messages failing): this relay's mail failed DMARC although it carries the relay's signature"), "{actions}");
        assert!(
            actions.contains("dkim-relay dns-check --domain example.com"),
            "{actions}"
        );
        assert!(
            actions.contains("Check that hd1._domainkey.example.com is published"),
            "{actions}"
        );
        assert!(
            actions.contains("your SPF authorises it (SPF passes for bounce.example.com)"),
            "{actions}"
        );
    }

    #[test]
    fn a_trusted_arc_chain_or_forwarded_reason_means_forwarded() {
        let reason = |t: &str, c: &str| {
            format!("<reason><type>{t}</type><comment>{c}</comment></reason></policy_evaluated>")
        };
        let spf_other = "<spf><domain>gmail.com</domain><result>pass</result></spf>";
        let xml = report_of(&[
            record("192.0.2.10", 4, false, spf_other)
                .replace("</policy_evaluated>", &reason("local_policy", "arc=pass")),
            record("192.0.2.11", 2, false, spf_other)
                .replace("</policy_evaluated>", &reason("mailing_list", "")),
            record("192.0.2.12", 1, false, spf_other)
                .replace("</policy_evaluated>", &reason("local_policy", "")),
        ]);
        let d = &analyze(&[parse_report(&xml).expect("report")], &relay())[0];
        let kinds: Vec<SourceKind> = d.sources.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SourceKind::Forwarded,
                SourceKind::Forwarded,
                SourceKind::LegitimateFailing
            ]
        );
        assert_eq!(
            d.sources[0].override_reasons,
            vec!["arc=pass", "local_policy"]
        );
    }

    #[test]
    fn already_at_reject_with_only_forgers_failing_is_ready() {
        let xml = report_of(&[
            record(RELAY_IP, 10, true, ""),
            record(
                "192.0.2.1",
                3,
                false,
                "<spf><domain>example.com</domain><result>fail</result></spf>",
            ),
        ])
        .replace("<p>none</p>", "<p>reject</p>");
        let d = &analyze(&[parse_report(&xml).expect("report")], &relay())[0];
        assert!(d.verdict.ready);
        assert!(d.verdict.summary.starts_with(
            "already p=reject, and every source that fails DMARC looks illegitimate (3 of 13 messages"
        ), "{}", d.verdict.summary);
    }
}

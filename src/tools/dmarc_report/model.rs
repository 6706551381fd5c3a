//! The plain data of a DMARC report run, shared by the stages: what a report says ([`Report`],
//! [`Record`]), who the relay is ([`RelayIdentity`]), and the per-domain answer
//! ([`DomainSummary`], [`Source`], [`Verdict`]). Types and small pure helpers only: this module
//! imports nothing else of `dmarc_report`, so parse, analyze and render each depend on it and on
//! nothing of each other.

use crate::smtp::date::day_name;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A parsed aggregate report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The reporter (`report_metadata/org_name`), e.g. `google.com`.
    pub org_name: String,
    pub report_id: String,
    /// The period covered, seconds since the epoch (UTC).
    pub begin: Option<u64>,
    pub end: Option<u64>,
    pub policy: PolicyPublished,
    pub records: Vec<Record>,
    /// Records left out, each with why; the rest of the report still counts.
    pub problems: Vec<String>,
}

/// `policy_published`: the DMARC record the reporter found. Values as reported, lower case.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyPublished {
    /// The domain whose DMARC record applied (lower case, no final dot).
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adkim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspf: Option<String>,
    /// RFC 9990: the policy for non-existent subdomains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub np: Option<String>,
    /// RFC 9990: `y` when the record says `t=y` (testing: receivers apply one step less).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testing: Option<String>,
}

/// One `<record>`: `count` messages from one source with one set of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub source_ip: IpAddr,
    pub count: u64,
    /// What the receiver did: `none`, `quarantine`, `reject` (RFC 9990 adds `pass`); empty if
    /// not reported.
    pub disposition: String,
    /// `policy_evaluated/dkim` = pass: a DKIM signature passed *and* aligned with the From domain.
    pub dkim_aligned: bool,
    /// `policy_evaluated/spf` = pass: SPF passed *and* aligned with the From domain.
    pub spf_aligned: bool,
    /// `policy_evaluated/reason/type`s: why the receiver overrode the policy (`forwarded`,
    /// `mailing_list`, `local_policy`, …), plus `arc=pass` when a reason's comment says the
    /// receiver trusted the message's ARC chain (Google's note on forwarded mail).
    pub reasons: Vec<String>,
    pub header_from: String,
    pub envelope_from: String,
    /// `auth_results/dkim`: every signature the receiver checked, aligned or not.
    pub dkim: Vec<DkimAuth>,
    /// `auth_results/spf`: the SPF check(s), for whichever domain was checked.
    pub spf: Vec<SpfAuth>,
}

impl Record {
    /// DMARC passes when DKIM or SPF passes aligned.
    pub fn dmarc_pass(&self) -> bool {
        self.dkim_aligned || self.spf_aligned
    }
}

/// One DKIM signature's result (`d=`, `s=`, pass/fail/…).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkimAuth {
    pub domain: String,
    pub selector: String,
    pub result: String,
}

/// One SPF result: the domain checked (usually the envelope sender's), its scope and result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpfAuth {
    pub domain: String,
    pub scope: String,
    pub result: String,
}

/// Lower case, without a final dot: how domains are compared.
pub fn normalize_domain(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// What a source looks like, judged from the reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// One of the relay's addresses; all its mail passes DMARC.
    ThisRelay,
    /// One of the relay's addresses, and some of its mail fails DMARC.
    RelayFailing,
    /// Another address whose mail carries the relay's signature and passes: forwarded intact,
    /// or a relay address missing from `public_addresses`.
    RelaySigned,
    /// Passes DMARC without the relay: a sender the domain's DNS authorises.
    Authorized,
    /// Fails after forwarding: the relay's signature broke, or the receiver says forwarded or
    /// mailing list.
    Forwarded,
    /// Fails DMARC, yet authenticates as something: looks like legitimate mail `p=reject` drops.
    LegitimateFailing,
    /// Fails DMARC and authenticates as nothing: looks like forgery.
    Unauthenticated,
}

impl SourceKind {
    /// Whether this source stands between the domain and `p=reject`.
    pub fn blocks(self) -> bool {
        matches!(
            self,
            SourceKind::RelayFailing | SourceKind::LegitimateFailing
        )
    }

    /// The text report's short label.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::ThisRelay => "this relay",
            SourceKind::RelayFailing => "this relay, FAILING: see verdict",
            SourceKind::RelaySigned => "relay-signed, other address",
            SourceKind::Authorized => "passes without the relay",
            SourceKind::Forwarded => "forwarded (list/forwarder)",
            SourceKind::LegitimateFailing => "FAILS, looks legitimate: see verdict",
            SourceKind::Unauthenticated => "fails all: likely forgery",
        }
    }
}

/// A DKIM signature (d=, s=) seen on this source's mail, in messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignatureSeen {
    pub domain: String,
    pub selector: String,
    /// Messages where it verified.
    pub pass: u64,
    /// Messages where it did not (fail, neutral, temperror, permerror, policy, none).
    pub fail: u64,
    /// One of the relay's configured domain/selector pairs.
    pub relay: bool,
}

/// An SPF result for one checked domain, in messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpfSeen {
    /// The domain checked (usually the envelope sender's); empty when not reported.
    pub domain: String,
    pub pass: u64,
    /// Messages with any other result (fail, softfail, neutral, none, temperror, permerror).
    pub fail: u64,
}

/// One sending address of one policy domain, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    pub ip: IpAddr,
    pub messages: u64,
    /// Messages passing DMARC (DKIM or SPF aligned).
    pub dmarc_pass: u64,
    pub dkim_aligned_pass: u64,
    pub spf_aligned_pass: u64,
    /// What receivers did: `none`/`quarantine`/`reject` → messages.
    pub dispositions: BTreeMap<String, u64>,
    pub header_from: Vec<String>,
    pub dkim: Vec<SignatureSeen>,
    pub spf: Vec<SpfSeen>,
    /// Reported policy-override reasons (`forwarded`, `mailing_list`, …).
    pub override_reasons: Vec<String>,
    pub reporters: Vec<String>,
    /// The address is one of the relay's.
    pub this_relay: bool,
    /// Messages carrying one of the relay's signatures (verified or not).
    pub relay_signed: u64,
    pub kind: SourceKind,
    pub advice: String,
}

/// Which mail is this relay's: its outbound addresses and the d=/s= pairs it signs with.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RelayIdentity {
    pub addresses: Vec<IpAddr>,
    /// Signing domain → selectors (lower case), from `dkim.domains`.
    pub signing: BTreeMap<String, Vec<String>>,
    /// Why the relay may be recognised only partly (no config, hostname unresolved, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl RelayIdentity {
    pub fn is_relay_address(&self, ip: IpAddr) -> bool {
        self.addresses.contains(&ip)
    }

    /// A signature with one of the relay's configured domain/selector pairs.
    pub fn signs_with(&self, domain: &str, selector: &str) -> bool {
        self.signing
            .get(domain)
            .is_some_and(|sels| sels.iter().any(|s| s == selector))
    }

    /// The relay has a key for `domain`, a parent of it, or one of its subdomains.
    pub fn signs_for(&self, domain: &str) -> bool {
        self.signing.keys().any(|d| related(d, domain))
    }
}

/// The same domain, or one is a subdomain of the other (relaxed alignment's view, without a
/// public-suffix list: report domains are organizational domains or below).
pub fn related(a: &str, b: &str) -> bool {
    a == b || is_subdomain(a, b) || is_subdomain(b, a)
}

fn is_subdomain(child: &str, parent: &str) -> bool {
    child.len() > parent.len() + 1
        && child.ends_with(parent)
        && child.as_bytes()[child.len() - parent.len() - 1] == b'.'
}

/// Everything known about one policy domain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainSummary {
    pub domain: String,
    /// The policy of the most recent report.
    pub policy: PolicyPublished,
    pub reports: usize,
    pub reporters: Vec<String>,
    /// First and last day covered (UTC), `YYYY-MM-DD`.
    pub first_day: Option<String>,
    pub last_day: Option<String>,
    pub messages: u64,
    pub dmarc_pass: u64,
    /// Whether `dkim.domains` has a key for this domain (or a parent or subdomain).
    pub relay_signs_for_domain: bool,
    /// Every message by outcome (the totals of `days`, plus reports that give no period).
    pub outcomes: Outcomes,
    /// What receivers did with the failing messages.
    pub failing_dispositions: FailingDispositions,
    /// Per UTC day of the reports, in order; days without reports are left out.
    pub days: Vec<DaySummary>,
    /// By volume, largest first.
    pub sources: Vec<Source>,
    pub verdict: Verdict,
}

/// The answer to "ready for p=reject?".
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub ready: bool,
    pub summary: String,
    /// What to fix first: one line per source that blocks `p=reject`.
    pub actions: Vec<String>,
    /// What else the evidence says, and its limits.
    pub notes: Vec<String>,
}

/// A file (or zip entry) that gave no report, or a record left out of one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileError {
    pub file: String,
    pub error: String,
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(secs: u64) -> String {
    day_name((secs / 86_400) as i64)
}

/// The UTC day a report is counted on: the day holding the middle of its period (most
/// reporters cover one UTC day; some cover 24 hours from another hour, which then counts on
/// the day holding most of it). `None` when the report gives no period.
pub fn report_day(report: &Report) -> Option<i64> {
    let secs = match (report.begin, report.end) {
        (Some(b), Some(e)) if e > b => b + (e - b) / 2,
        (Some(b), _) => b,
        (None, Some(e)) => e,
        (None, None) => return None,
    };
    Some((secs / 86_400) as i64)
}

/// Messages by what became of them: the four series of the daily chart. Together they are all
/// of a domain's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Outcomes {
    /// Pass DMARC and come from this relay (its address, or carrying its signature).
    pub relay_pass: u64,
    /// Pass DMARC without the relay: other senders the domain authorises.
    pub other_pass: u64,
    /// Fail DMARC, from sources that look legitimate (mail broken by forwarding included).
    pub fail_legitimate: u64,
    /// Fail DMARC, from sources that authenticate as nothing: likely forgery.
    pub fail_forged: u64,
}

impl Outcomes {
    pub fn add(&mut self, other: &Outcomes) {
        self.relay_pass = self.relay_pass.saturating_add(other.relay_pass);
        self.other_pass = self.other_pass.saturating_add(other.other_pass);
        self.fail_legitimate = self.fail_legitimate.saturating_add(other.fail_legitimate);
        self.fail_forged = self.fail_forged.saturating_add(other.fail_forged);
    }
}

/// What receivers did with the mail that failed DMARC: delivered anyway (`none`, also when they
/// did not say), put in spam (`quarantine`), refused (`reject`). The effect of the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FailingDispositions {
    pub none: u64,
    pub quarantine: u64,
    pub reject: u64,
}

impl FailingDispositions {
    /// Count `n` failing messages the receiver reported with `disposition` (lower case).
    pub fn count(&mut self, disposition: &str, n: u64) {
        let slot = match disposition {
            "reject" => &mut self.reject,
            "quarantine" => &mut self.quarantine,
            _ => &mut self.none,
        };
        *slot = slot.saturating_add(n);
    }

    pub fn add(&mut self, other: &FailingDispositions) {
        self.none = self.none.saturating_add(other.none);
        self.quarantine = self.quarantine.saturating_add(other.quarantine);
        self.reject = self.reject.saturating_add(other.reject);
    }

    pub fn total(&self) -> u64 {
        self.none
            .saturating_add(self.quarantine)
            .saturating_add(self.reject)
    }
}

/// One UTC day of a domain's reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaySummary {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub outcomes: Outcomes,
    pub failing_dispositions: FailingDispositions,
}

/// What one run read, and what it left out on purpose.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    /// Reports counted (each once).
    pub reports_read: usize,
    /// E-mail messages looked at (files, mbox and Maildir messages, IMAP messages).
    pub messages_read: usize,
    /// Of those, messages holding no report: skipped.
    pub messages_without_report: usize,
    /// Reports seen again (same reporter and report id): counted once.
    pub duplicates: usize,
    /// With `--since`: the first day counted, and the reports left out for ending before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub before_since: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        let _ = utc_date(u64::MAX);
    }
}

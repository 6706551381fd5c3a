//! One sending address within one policy domain: its records added up, then classified
//! (this relay, authorised elsewhere, forwarded, legitimate-looking but failing, forger) with
//! the advice an operator needs. The evidence for a failing source is taken from its failing
//! records only, so a forwarder that passes some mail does not hide the mail it breaks.

use super::model::{
    related, FailingDispositions, Record, RelayIdentity, SignatureSeen, Source, SourceKind, SpfSeen,
};
use super::small::{SmallMap, SmallSet};
use std::net::IpAddr;

/// Running totals for one source, and the evidence its failing mail carries.
pub(super) struct SourceAcc {
    ip: IpAddr,
    this_relay: bool,
    messages: u64,
    dmarc_pass: u64,
    dkim_aligned_pass: u64,
    spf_aligned_pass: u64,
    dispositions: SmallMap<String, u64>,
    header_from: SmallSet<String>,
    dkim: SmallMap<(String, String), (u64, u64)>,
    spf: SmallMap<String, (u64, u64)>,
    reasons: SmallSet<String>,
    reporters: SmallSet<String>,
    relay_signed: u64,
    /// How the passing mail passed (`DKIM d=… s=…`, `SPF …`), for the advice.
    passed_by: SmallSet<String>,
    fail: FailEvidence,
    /// Per report day (`None`: the report gave no period), for the daily chart.
    daily: SmallMap<Option<i64>, DayAcc>,
}

/// One day of one source: passing mail by whether it came through the relay, failing mail by
/// what receivers did with it. Whether the failing mail looks forged is known only once the
/// source is classified, over all its days.
#[derive(Default)]
pub(super) struct DayAcc {
    pub relay_pass: u64,
    pub other_pass: u64,
    pub failing: FailingDispositions,
}

/// What the failing records of a source show.
#[derive(Default)]
struct FailEvidence {
    /// DKIM signatures of the policy domain (or a relative) not made by the relay: (d, s).
    own_signature: SmallSet<(String, String)>,
    /// Failing messages that carry the relay's signature.
    relay_signature: u64,
    /// SPF passed for the policy domain or a relative of it.
    own_spf: SmallSet<String>,
    /// Other domains this mail authenticated as (SPF or DKIM pass).
    other_domains: SmallSet<String>,
    /// Failing messages the receiver reports as forwarded / from a mailing list.
    forwarded: u64,
}

/// Override reasons that mean "forwarded": RFC 7489's types, and a trusted ARC chain.
const FORWARDING_REASONS: &[&str] = &["forwarded", "mailing_list", "trusted_forwarder", "arc=pass"];

impl SourceAcc {
    pub(super) fn new(ip: IpAddr, this_relay: bool) -> SourceAcc {
        SourceAcc {
            ip,
            this_relay,
            messages: 0,
            dmarc_pass: 0,
            dkim_aligned_pass: 0,
            spf_aligned_pass: 0,
            dispositions: SmallMap::default(),
            header_from: SmallSet::default(),
            dkim: SmallMap::default(),
            spf: SmallMap::default(),
            reasons: SmallSet::default(),
            reporters: SmallSet::default(),
            relay_signed: 0,
            passed_by: SmallSet::default(),
            fail: FailEvidence::default(),
            daily: SmallMap::default(),
        }
    }

    /// The per-day counts, taken out before the source is classified.
    pub(super) fn take_daily(&mut self) -> Vec<(Option<i64>, DayAcc)> {
        std::mem::take(&mut self.daily).into_sorted()
    }

    /// Count one record of a report on `day` (see [`super::model::report_day`]).
    pub(super) fn add(
        &mut self,
        r: &Record,
        domain: &str,
        reporter: &str,
        day: Option<i64>,
        relay: &RelayIdentity,
    ) {
        let n = r.count;
        self.messages = self.messages.saturating_add(n);
        if r.dmarc_pass() {
            self.dmarc_pass = self.dmarc_pass.saturating_add(n);
        }
        if r.dkim_aligned {
            self.dkim_aligned_pass = self.dkim_aligned_pass.saturating_add(n);
        }
        if r.spf_aligned {
            self.spf_aligned_pass = self.spf_aligned_pass.saturating_add(n);
        }
        let disposition = if r.disposition.is_empty() {
            "unreported".to_string()
        } else {
            r.disposition.clone()
        };
        add_to(self.dispositions.slot(disposition, || 0), n);
        if !r.header_from.is_empty() {
            self.header_from.insert(r.header_from.clone());
        }
        self.reasons.extend(r.reasons.iter().cloned());
        self.reporters.insert(reporter.to_string());

        // One count per message for each distinct signature, even if a reporter lists it twice.
        let mut signatures: SmallMap<(&str, &str), bool> = SmallMap::default();
        for s in &r.dkim {
            *signatures.slot((&s.domain, &s.selector), || false) |= s.result == "pass";
        }
        let mut relay_signed = false;
        for ((d, s), pass) in signatures.iter() {
            let counts = self.dkim.slot((d.to_string(), s.to_string()), || (0, 0));
            add_to(if *pass { &mut counts.0 } else { &mut counts.1 }, n);
            relay_signed |= relay.signs_with(d, s);
        }
        if relay_signed {
            self.relay_signed = self.relay_signed.saturating_add(n);
        }
        let today = self.daily.slot(day, DayAcc::default);
        if !r.dmarc_pass() {
            today.failing.count(&r.disposition, n);
        } else if self.this_relay || relay_signed {
            add_to(&mut today.relay_pass, n);
        } else {
            add_to(&mut today.other_pass, n);
        }
        let mut spf_pass: SmallSet<&str> = SmallSet::default();
        for s in &r.spf {
            let counts = self.spf.slot(s.domain.clone(), || (0, 0));
            if s.result == "pass" {
                add_to(&mut counts.0, n);
                spf_pass.insert(&s.domain);
            } else {
                add_to(&mut counts.1, n);
            }
        }

        if r.dmarc_pass() {
            for ((d, s), pass) in signatures.iter() {
                if *pass && related(d, domain) {
                    self.passed_by.insert(format!("DKIM d={d} s={s}"));
                }
            }
            if r.spf_aligned {
                for d in spf_pass.sorted().into_iter().filter(|d| related(d, domain)) {
                    self.passed_by.insert(format!("SPF for {d}"));
                }
            }
            return;
        }
        let fail = &mut self.fail;
        if relay_signed {
            fail.relay_signature = fail.relay_signature.saturating_add(n);
        }
        if r.reasons
            .iter()
            .any(|x| FORWARDING_REASONS.contains(&x.as_str()))
        {
            fail.forwarded = fail.forwarded.saturating_add(n);
        }
        for ((d, s), pass) in signatures.iter() {
            if d.is_empty() {
                continue;
            }
            if related(d, domain) {
                if !relay.signs_with(d, s) {
                    fail.own_signature.insert((d.to_string(), s.to_string()));
                }
            } else if *pass {
                fail.other_domains.insert(d.to_string());
            }
        }
        for d in spf_pass.into_sorted().into_iter().filter(|d| !d.is_empty()) {
            if related(d, domain) {
                fail.own_spf.insert(d.to_string());
            } else {
                fail.other_domains.insert(d.to_string());
            }
        }
    }
}

fn add_to(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

/// Decide what a source is and what to do about it.
pub(super) fn classify(acc: SourceAcc, domain: &str, relay: &RelayIdentity) -> Source {
    let failing = acc.messages.saturating_sub(acc.dmarc_pass);
    let f = &acc.fail;
    let (kind, advice) = if acc.this_relay {
        if failing == 0 {
            (SourceKind::ThisRelay, "this relay".to_string())
        } else if f.relay_signature > 0 {
            (
                SourceKind::RelayFailing,
                format!("this relay's mail failed DMARC although it carries the relay's signature: the receiver could not verify it. Check the published keys with `dkim-relay dns-check --domain {domain}`."),
            )
        } else {
            (
                SourceKind::RelayFailing,
                "mail from this relay's address without the relay's signature: another program on the relay host sends directly (send it through the relay), or the From domain has no key in dkim.domains.".to_string(),
            )
        }
    } else if failing == 0 {
        if acc.relay_signed > 0 {
            (
                SourceKind::RelaySigned,
                "carries the relay's signature from another address: forwarded intact, or a relay address missing from public_addresses.".to_string(),
            )
        } else {
            let how = acc.passed_by.joined(", ");
            let how = if how.is_empty() {
                "aligned".to_string()
            } else {
                how
            };
            (
                SourceKind::Authorized,
                format!("passes DMARC without the relay ({how}): a sender your DNS authorises; make sure you recognise it."),
            )
        }
    } else if f.relay_signature > 0 || f.forwarded > 0 {
        let why = if f.relay_signature > 0 {
            "the relay's signature no longer verifies after forwarding (a mailing list or forwarder changed the message)"
        } else {
            "the receiver reports it as forwarded or from a mailing list"
        };
        (
            SourceKind::Forwarded,
            format!("{why}: not fixed by routing."),
        )
    } else if let Some((d, s)) = f.own_signature.sorted().first() {
        let sel = if s.is_empty() {
            "(no selector reported)".to_string()
        } else {
            s.clone()
        };
        (
            SourceKind::LegitimateFailing,
            format!("signs as {d} with selector {sel}, which is not the relay's, and does not pass: a service with its own key for your domain. Check that {sel}._domainkey.{d} is published and matches that service's key, or send its mail through the relay."),
        )
    } else if !f.own_spf.is_empty() {
        let list = f.own_spf.joined(", ");
        (
            SourceKind::LegitimateFailing,
            format!("your SPF authorises it (SPF passes for {list}) but its mail is not signed for {domain}, so DMARC fails: send its mail through the relay so it is signed, or have it sign with a DKIM key for {domain}."),
        )
    } else if !f.other_domains.is_empty() {
        let list = f.other_domains.joined(", ");
        (
            SourceKind::LegitimateFailing,
            format!("authenticates as {list}, not as {domain}: a service sending as you from its own domain (or someone using such a service to forge you). If it is yours, have it sign with a DKIM key for {domain} (its custom-domain settings) or send through the relay; if it must use its own envelope domain, SPF cannot align, so DKIM is the fix."),
        )
    } else {
        (
            SourceKind::Unauthenticated,
            "no SPF pass and no DKIM signature that verifies: likely forgery; if you recognise the address, send its mail through the relay.".to_string(),
        )
    };
    Source {
        ip: acc.ip,
        messages: acc.messages,
        dmarc_pass: acc.dmarc_pass,
        dkim_aligned_pass: acc.dkim_aligned_pass,
        spf_aligned_pass: acc.spf_aligned_pass,
        dispositions: acc.dispositions.into_sorted().into_iter().collect(),
        header_from: acc.header_from.into_sorted(),
        dkim: acc
            .dkim
            .into_sorted()
            .into_iter()
            .map(|((d, s), (pass, fail))| SignatureSeen {
                relay: relay.signs_with(&d, &s),
                domain: d,
                selector: s,
                pass,
                fail,
            })
            .collect(),
        spf: acc
            .spf
            .into_sorted()
            .into_iter()
            .map(|(domain, (pass, fail))| SpfSeen { domain, pass, fail })
            .collect(),
        override_reasons: acc.reasons.into_sorted(),
        reporters: acc.reporters.into_sorted(),
        this_relay: acc.this_relay,
        relay_signed: acc.relay_signed,
        kind,
        advice,
    }
}

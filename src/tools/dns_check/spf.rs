//! The SPF part of the DNS doctor: exactly one `v=spf1` record, passing (mail-auth's
//! `check_host`) for each of the relay's outbound addresses, within the 10-lookup limit counted
//! over the whole include/redirect tree, and how strict its final `all` is.

use super::{result, txt_strings, Check, CheckResult, Status, TxtAnswer};
use crate::config::Settings;
use mail_auth::dns::{NoCache, TxtRecordParser};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Qualifier, SpfRecord};
use mail_auth::{MessageAuthenticator, SpfResult};
use std::net::IpAddr;

/// RFC 7208 §4.6.4: at most 10 DNS-querying terms per SPF evaluation, includes counted.
pub const SPF_LOOKUP_LIMIT: usize = 10;

/// `public_addresses`, else what `hostname` resolves to (A and AAAA): the relay's outbound
/// addresses as dns-check and dmarc-report see them.
pub(crate) async fn public_addresses(
    settings: &Settings,
    resolver: &MessageAuthenticator,
) -> Result<Vec<IpAddr>, String> {
    if let Some(list) = &settings.public_addresses {
        return Ok(list.clone());
    }
    let host = settings.hostname.as_str();
    let mut out: Vec<IpAddr> = Vec::new();
    if let Ok(v4) = resolver.ipv4_lookup(host, None::<&NoCache>).await {
        out.extend(v4.records.iter().map(|a| IpAddr::V4(*a)));
    }
    if let Ok(v6) = resolver.ipv6_lookup(host, None::<&NoCache>).await {
        out.extend(v6.records.iter().map(|a| IpAddr::V6(*a)));
    }
    if out.is_empty() {
        Err(format!(
            "public_addresses is not set and hostname {host} does not resolve; set public_addresses in the config"
        ))
    } else {
        Ok(out)
    }
}

fn is_spf(text: &[u8]) -> bool {
    let t = text.to_ascii_lowercase();
    t == b"v=spf1" || t.starts_with(b"v=spf1 ")
}

pub(super) async fn check_spf(
    resolver: &MessageAuthenticator,
    domain: &str,
    hostname: &str,
    addresses: &Result<Vec<IpAddr>, String>,
) -> Vec<CheckResult> {
    let r = |status, msg: String| result(domain, Check::Spf, status, msg);
    let records = match txt_strings(resolver, domain).await {
        TxtAnswer::Records(r) => r,
        TxtAnswer::None => Vec::new(),
        TxtAnswer::Error(e) => {
            return vec![r(
                Status::Fail,
                format!("cannot look up the TXT records of {domain}: {e}"),
            )]
        }
    };
    let spf: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.concat())
        .filter(|t| is_spf(t))
        .collect();
    let suggestion = match addresses {
        Ok(a) => format!(
            "\"v=spf1 {} -all\"",
            a.iter().map(spf_term).collect::<Vec<_>>().join(" ")
        ),
        Err(_) => "\"v=spf1 ip4:ADDRESS -all\"".to_string(),
    };
    let record = match spf.len() {
        0 => {
            return vec![r(
                Status::Fail,
                format!("no SPF record at {domain}: publish {domain}. IN TXT {suggestion}"),
            )]
        }
        1 => &spf[0],
        n => {
            return vec![r(
                Status::Fail,
                format!(
                    "{n} SPF records at {domain}: receivers return permerror; merge them into one v=spf1 record"
                ),
            )]
        }
    };
    let text = String::from_utf8_lossy(record).to_string();
    let parsed = match SpfRecord::parse(record) {
        Ok(p) => p,
        Err(e) => {
            return vec![r(
                Status::Fail,
                format!("the SPF record of {domain} does not parse ({e}): \"{text}\""),
            )]
        }
    };

    let mut out = Vec::new();
    // Lookup count over the whole include/redirect tree.
    let mut count = 0usize;
    let mut notes = Vec::new();
    count_lookups(resolver, &parsed, 0, &mut count, &mut notes).await;
    if count > SPF_LOOKUP_LIMIT {
        out.push(r(
            Status::Fail,
            format!(
                "\"{text}\" needs {count} DNS lookups, over the limit of {SPF_LOOKUP_LIMIT}: receivers return permerror; replace includes by ip4:/ip6: ranges"
            ),
        ));
    } else {
        let extra = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        out.push(r(
            Status::Ok,
            format!("\"{text}\" uses {count} of {SPF_LOOKUP_LIMIT} DNS lookups{extra}"),
        ));
    }

    match addresses {
        Err(e) => out.push(r(
            Status::Fail,
            format!("cannot tell the relay's outbound addresses: {e}"),
        )),
        Ok(addrs) => {
            let sender = format!("postmaster@{domain}");
            for ip in addrs {
                let res = resolver
                    .check_host(SpfParameters::new(*ip, domain, hostname, hostname, &sender))
                    .await;
                let status = res.result();
                out.push(match status {
                    SpfResult::Pass => r(Status::Ok, format!("{ip} is authorized (pass)")),
                    SpfResult::PermError => r(
                        Status::Fail,
                        format!(
                            "{ip}: permerror (an invalid record, a missing include target, or over {SPF_LOOKUP_LIMIT} lookups): fix the record"
                        ),
                    ),
                    SpfResult::TempError => r(
                        Status::Fail,
                        format!("{ip}: temperror (DNS failed during evaluation); try again"),
                    ),
                    other => r(
                        Status::Fail,
                        format!(
                            "{ip} is not authorized ({other}): add {} to the SPF record of {domain}",
                            spf_term(ip)
                        ),
                    ),
                });
            }
        }
    }

    // The final `all`: how strictly unlisted senders are treated.
    let all = parsed
        .directives
        .iter()
        .rev()
        .find(|d| d.mechanism == Mechanism::All)
        .map(|d| d.qualifier.clone());
    match (all, &parsed.redirect) {
        (Some(Qualifier::SoftFail), _) => out.push(r(
            Status::Warn,
            "ends in ~all (softfail): receivers accept mail from unlisted servers; use -all once every sender is listed".into(),
        )),
        (Some(Qualifier::Neutral), _) => out.push(r(
            Status::Warn,
            "ends in ?all (neutral): says nothing about unlisted servers; use -all once every sender is listed".into(),
        )),
        (Some(Qualifier::Pass), _) => out.push(r(
            Status::Fail,
            "+all authorizes every server on the internet to send as this domain; end with -all".into(),
        )),
        (None, None) => out.push(r(
            Status::Warn,
            "no all mechanism: unlisted servers get neutral; end the record with -all".into(),
        )),
        _ => {}
    }
    out
}

fn spf_term(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("ip4:{a}"),
        IpAddr::V6(a) => format!("ip6:{a}"),
    }
}

fn literal(m: &Macro) -> Option<String> {
    match m {
        Macro::Literal(b) => Some(String::from_utf8_lossy(b).to_string()),
        _ => None,
    }
}

/// Count the DNS-querying terms (include, a, mx, ptr, exists, redirect) of a record and of the
/// records it includes, as receivers count them (RFC 7208 §4.6.4) — all of them, not only those
/// one evaluation happens to reach, since each receiver's path differs.
fn count_lookups<'a>(
    resolver: &'a MessageAuthenticator,
    record: &'a SpfRecord,
    depth: usize,
    count: &'a mut usize,
    notes: &'a mut Vec<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        if depth > SPF_LOOKUP_LIMIT {
            return;
        }
        let mut targets = Vec::new();
        for d in record.directives.iter() {
            match &d.mechanism {
                Mechanism::Include { macro_string } => {
                    *count += 1;
                    match literal(macro_string) {
                        Some(t) => targets.push(t),
                        None => notes.push("an include with macros was not followed".into()),
                    }
                }
                Mechanism::A { .. }
                | Mechanism::Mx { .. }
                | Mechanism::Ptr { .. }
                | Mechanism::Exists { .. } => *count += 1,
                _ => {}
            }
        }
        if let Some(redirect) = &record.redirect {
            *count += 1;
            match literal(redirect) {
                Some(t) => targets.push(t),
                None => notes.push("a redirect with macros was not followed".into()),
            }
        }
        for target in targets {
            if *count > SPF_LOOKUP_LIMIT {
                return;
            }
            let TxtAnswer::Records(records) = txt_strings(resolver, &target).await else {
                notes.push(format!("{target} has no TXT record"));
                continue;
            };
            let Some(text) = records.iter().map(|r| r.concat()).find(|t| is_spf(t)) else {
                notes.push(format!("{target} has no SPF record"));
                continue;
            };
            match SpfRecord::parse(&text) {
                Ok(inner) => count_lookups(resolver, &inner, depth + 1, count, notes).await,
                Err(_) => notes.push(format!("the SPF record of {target} does not parse")),
            }
        }
    })
}

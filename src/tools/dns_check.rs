//! The DNS doctor: for each configured signing domain, checks that the published DKIM records
//! match the private keys, that SPF authorizes the relay's outbound addresses (within the
//! 10-lookup limit) and that a DMARC record exists, and says what to change. Used by the
//! `dns-check` command and, periodically, by `serve` (which logs problems and exports
//! `dkim_relay_dns_check_ok{domain,check}`). A failing check never stops mail.

use crate::config::Settings;
use crate::dkim::keys::{rsa_pkcs1_from_spki, KeyAlgorithm, PrivateKey};
use crate::tools::keygen::{txt_value, zone_record, TXT_STRING_MAX};
use mail_auth::dkim::DomainKey;
use mail_auth::dmarc::{DmarcRecord, Policy};
use mail_auth::dns::{NoCache, TxtRecordParser};
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Qualifier, SpfRecord};
use mail_auth::{MessageAuthenticator, SpfResult};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// RFC 7208 §4.6.4: at most 10 DNS-querying terms per SPF evaluation, includes counted.
pub const SPF_LOOKUP_LIMIT: usize = 10;

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
            out.push(check_dkim(resolver, domain, &sel.selector, &sel.private_key).await);
        }
        // Resolved once, for all domains.
        if addresses.is_none() {
            addresses = Some(public_addresses(settings, resolver).await);
        }
        if let Some(addrs) = &addresses {
            out.extend(check_spf(resolver, domain, &settings.hostname, addrs).await);
        }
        out.push(check_dmarc(resolver, domain).await);
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

/// A TXT lookup that keeps each record's character strings apart (mail-auth joins them; the
/// DKIM check needs to see how a record was split).
enum TxtAnswer {
    Records(Vec<Vec<Vec<u8>>>),
    /// NXDOMAIN or no TXT at the name.
    None,
    Error(String),
}

async fn txt_strings(resolver: &MessageAuthenticator, name: &str) -> TxtAnswer {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.resolver().txt_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let records: Vec<Vec<Vec<u8>>> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect()),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                TxtAnswer::None
            } else {
                TxtAnswer::Records(records)
            }
        }
        Err(e) if e.is_no_records_found() => TxtAnswer::None,
        Err(e) => TxtAnswer::Error(e.to_string()),
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

fn is_dkim_record(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("v=DKIM1") || tags(t).iter().any(|(k, _)| k == "p" || k == "k")
}

async fn check_dkim(
    resolver: &MessageAuthenticator,
    domain: &str,
    selector: &str,
    key_path: &std::path::Path,
) -> CheckResult {
    let check = Check::Dkim(selector.to_string());
    let name = format!("{selector}._domainkey.{domain}");
    let key = match PrivateKey::load(key_path) {
        Ok(k) => k,
        Err(e) => {
            return result(domain, check, Status::Fail, format!("cannot check: {e}"));
        }
    };
    let expected = zone_record(&name, &txt_value(key.algorithm, &key.public_key_base64()))
        .replace("\n\t", " ");
    let records = match txt_strings(resolver, &name).await {
        TxtAnswer::Records(r) => r,
        TxtAnswer::None => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("no TXT record at {name}: publish {expected}"),
            )
        }
        TxtAnswer::Error(e) => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("cannot look up {name}: {e}"),
            )
        }
    };
    let dkim: Vec<&Vec<Vec<u8>>> = records
        .iter()
        .filter(|r| is_dkim_record(&String::from_utf8_lossy(&r.concat())))
        .collect();
    match dkim.len() {
        0 => {
            return result(
                domain,
                check,
                Status::Fail,
                format!(
                    "the TXT record at {name} is not a DKIM record (no v=DKIM1, k= or p=): publish {expected}"
                ),
            )
        }
        1 => {}
        n => {
            return result(
                domain,
                check,
                Status::Fail,
                format!(
                    "{n} DKIM records at {name}: receivers pick one at random or fail; keep exactly one, {expected}"
                ),
            )
        }
    }
    let strings = dkim[0];
    let joined = strings.concat();
    let text = String::from_utf8_lossy(&joined).to_string();
    // A value cut at the string limit ends in a string of exactly 255 bytes (a correct split's
    // last string is almost always shorter; full-size strings before it are normal).
    let hint_split = strings.last().is_some_and(|s| s.len() == TXT_STRING_MAX);

    if text.contains('"') {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "the record at {name} contains quote characters: the zone-file form was pasted into a field that takes the bare value; publish the value without quotes (the 'DNS panel' line of keygen)"
            ),
        );
    }
    let t = tags(&text);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(v) = get("v") {
        if v != "DKIM1" || !text.trim_start().starts_with("v=") {
            return result(
                domain,
                check,
                Status::Fail,
                format!("v={v} at {name}: it must be v=DKIM1 and come first"),
            );
        }
    }
    let k = get("k").unwrap_or("rsa").to_ascii_lowercase();
    if k != key.algorithm.key_type() {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "k={k} at {name} but {} is an {} key: publish {expected}",
                key_path.display(),
                key.algorithm.key_type()
            ),
        );
    }
    let p: String = get("p")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if p.is_empty() {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "{name} has an empty p= (key revoked): signatures of this selector fail; publish {expected}"
            ),
        );
    }
    let truncated = if hint_split {
        format!(
            " (its last string is exactly {TXT_STRING_MAX} bytes: the value was probably cut at the \
             TXT string limit; publish it as several quoted strings of at most {TXT_STRING_MAX} bytes)"
        )
    } else {
        String::new()
    };
    use base64::Engine;
    let published = match base64::engine::general_purpose::STANDARD.decode(p.as_bytes()) {
        Ok(b) => b,
        Err(_) => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("p= at {name} is not valid base64{truncated}"),
            )
        }
    };
    // What receivers will do with it: mail-auth's parser stands in for them.
    if let Err(e) = DomainKey::parse(&joined) {
        return result(
            domain,
            check,
            Status::Fail,
            format!("receivers cannot use the record at {name}: {e}{truncated}"),
        );
    }
    if !same_key(key.algorithm, &published, &key.public_key) {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "{name} publishes a different key than {}{truncated}: publish {expected}",
                key_path.display()
            ),
        );
    }
    if let Some(tflags) = get("t") {
        if tflags
            .split(':')
            .any(|f| f.trim().eq_ignore_ascii_case("y"))
        {
            return result(
                domain,
                check,
                Status::Warn,
                format!(
                    "{name} matches the key but has t=y (testing): receivers may treat failing signatures as unsigned; remove t=y for production"
                ),
            );
        }
    }
    let bits = match key.algorithm {
        KeyAlgorithm::RsaSha256 => format!(", {} bits", key.bits),
        KeyAlgorithm::Ed25519Sha256 => String::new(),
    };
    result(
        domain,
        check,
        Status::Ok,
        format!(
            "{name} publishes the public key of {} ({}{bits})",
            key_path.display(),
            key.algorithm.key_type()
        ),
    )
}

/// Same public key? RSA records may publish SubjectPublicKeyInfo (usual) or a bare PKCS#1
/// RSAPublicKey; both are accepted by verifiers, so both count.
fn same_key(alg: KeyAlgorithm, published: &[u8], ours: &[u8]) -> bool {
    match alg {
        KeyAlgorithm::Ed25519Sha256 => published == ours,
        KeyAlgorithm::RsaSha256 => {
            let a = rsa_pkcs1_from_spki(published).unwrap_or(published);
            let b = rsa_pkcs1_from_spki(ours).unwrap_or(ours);
            a == b
        }
    }
}

/// `public_addresses`, else what `hostname` resolves to (A and AAAA).
async fn public_addresses(
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
            "cannot tell the relay's outbound addresses: public_addresses is not set and hostname {host} does not resolve; set public_addresses in the config"
        ))
    } else {
        Ok(out)
    }
}

fn is_spf(text: &[u8]) -> bool {
    let t = text.to_ascii_lowercase();
    t == b"v=spf1" || t.starts_with(b"v=spf1 ")
}

async fn check_spf(
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
        Err(e) => out.push(r(Status::Fail, e.clone())),
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

async fn check_dmarc(resolver: &MessageAuthenticator, domain: &str) -> CheckResult {
    let r = |status, msg: String| result(domain, Check::Dmarc, status, msg);
    let start = format!(
        "\"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}\" to start, then p=quarantine and p=reject"
    );
    // The record for the domain itself, else (policy discovery) a parent's, which then applies
    // through its sp=. Without the public suffix list, parents down to two labels are tried.
    let labels: Vec<&str> = domain.split('.').collect();
    let mut found: Option<(String, Vec<Vec<u8>>)> = None;
    for i in 0..labels.len().saturating_sub(1) {
        let name = format!("_dmarc.{}", labels[i..].join("."));
        match txt_strings(resolver, &name).await {
            TxtAnswer::Records(recs) => {
                let dmarc: Vec<Vec<u8>> = recs
                    .iter()
                    .map(|r| r.concat())
                    .filter(|t| t.to_ascii_lowercase().starts_with(b"v=dmarc1"))
                    .collect();
                if !dmarc.is_empty() {
                    found = Some((name, dmarc));
                    break;
                }
            }
            TxtAnswer::None => {}
            TxtAnswer::Error(e) => {
                return r(Status::Fail, format!("cannot look up {name}: {e}"));
            }
        }
    }
    let Some((name, records)) = found else {
        return r(
            Status::Fail,
            format!("no DMARC record at _dmarc.{domain}: publish _dmarc.{domain}. IN TXT {start}"),
        );
    };
    if records.len() > 1 {
        return r(
            Status::Fail,
            format!(
                "{} DMARC records at {name}: receivers ignore them all; keep exactly one",
                records.len()
            ),
        );
    }
    let text = String::from_utf8_lossy(&records[0]).to_string();
    let rec = match DmarcRecord::parse(&records[0]) {
        Ok(rec) => rec,
        Err(e) => {
            return r(
                Status::Fail,
                format!("the DMARC record at {name} does not parse ({e}): \"{text}\""),
            )
        }
    };
    let inherited = name != format!("_dmarc.{domain}");
    let policy = if inherited { &rec.sp } else { &rec.p };
    let whose = if inherited {
        format!("{name} (inherited, sp=)")
    } else {
        name.clone()
    };
    let needs = format!(
        "p=reject needs every legitimate sender of {domain} to sign with d={domain} (mail through this relay does) or pass aligned SPF; check the rua= reports first"
    );
    let no_rua = if rec.rua.is_empty() {
        "; add rua=mailto:… to receive aggregate reports"
    } else {
        ""
    };
    let testing = if rec.t {
        "; t=y (testing) makes receivers apply it one level less strictly"
    } else {
        ""
    };
    match policy {
        Policy::Reject if !rec.t => r(
            Status::Ok,
            format!("{whose}: p=reject: receivers reject mail of {domain} that is not DKIM- or SPF-aligned{no_rua}"),
        ),
        Policy::Reject | Policy::Quarantine => r(
            if rec.t { Status::Warn } else { Status::Ok },
            format!("{whose}: policy {policy}{testing}{no_rua}; {needs}"),
        ),
        Policy::None | Policy::Unspecified => r(
            Status::Warn,
            format!("{whose}: p=none: receivers take no action on mail that fails DMARC, so spoofing still works{no_rua}; {needs}"),
        ),
    }
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

    #[test]
    fn tag_parsing() {
        let t = tags("v=DKIM1; k = rsa ;p=AB CD");
        assert_eq!(t[1], ("k".into(), "rsa".into()));
        assert_eq!(t[2], ("p".into(), "AB CD".into()));
        assert!(is_dkim_record("v=DKIM1; p=x"));
        assert!(is_dkim_record("k=rsa; p=x"));
        assert!(!is_dkim_record("google-site-verification=abc"));
    }
}

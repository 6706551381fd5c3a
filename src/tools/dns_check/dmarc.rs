//! The DMARC part of the DNS doctor: a record at `_dmarc.D` (or a parent's, inherited), exactly
//! one, parsing, and its policy with what `p=reject` needs.

use super::{result, txt_strings, Check, CheckResult, Status, TxtAnswer};
use mail_auth::dmarc::{DmarcRecord, Policy};
use mail_auth::dns::TxtRecordParser;
use mail_auth::MessageAuthenticator;

pub(super) async fn check_dmarc(resolver: &MessageAuthenticator, domain: &str) -> CheckResult {
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

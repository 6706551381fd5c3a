//! The daily report of RFC 8460 4: one JSON object per recipient domain and UTC day, the
//! counts of every policy its mail was under, gzip'd for sending (`application/tlsrpt+gzip`),
//! named `<submitter>!<policy domain>!<begin>!<end>.json.gz` (5.3).

use super::store::{Day, PolicyCounts};
use super::{FailureDetail, ReportPolicy};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// The media type of a gzip'd report.
pub const MEDIA_TYPE: &str = "application/tlsrpt+gzip";

/// Who sends the reports.
#[derive(Debug, Clone)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info`.
    pub contact: String,
    /// The relay's host name: the submitter in file names, subjects and report ids.
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    #[serde(rename = "organization-name")]
    pub organization: String,
    #[serde(rename = "date-range")]
    pub date_range: DateRange,
    #[serde(rename = "contact-info")]
    pub contact: String,
    #[serde(rename = "report-id")]
    pub report_id: String,
    pub policies: Vec<PolicyResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    #[serde(rename = "start-datetime")]
    pub start: String,
    #[serde(rename = "end-datetime")]
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResult {
    pub policy: ReportPolicy,
    pub summary: Summary,
    #[serde(
        rename = "failure-details",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failure_details: Vec<FailureCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(rename = "total-successful-session-count")]
    pub successful: u64,
    #[serde(rename = "total-failure-session-count")]
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    #[serde(flatten)]
    pub detail: FailureDetail,
    #[serde(rename = "failed-session-count")]
    pub count: u64,
}

impl Report {
    /// The report for `domain` on `day`, from its counts.
    pub fn build(submitter: &Submitter, day: Day, domain: &str, counts: &[PolicyCounts]) -> Report {
        let policies = counts
            .iter()
            .map(|c| PolicyResult {
                policy: c.policy.clone(),
                summary: Summary {
                    successful: c.successes,
                    failed: c.failed(),
                },
                failure_details: c
                    .failures
                    .iter()
                    .map(|(detail, count)| FailureCount {
                        detail: detail.clone(),
                        count: *count,
                    })
                    .collect(),
            })
            .collect();
        Report {
            organization: submitter.organization.clone(),
            date_range: DateRange {
                start: format!("{day}T00:00:00Z"),
                end: format!("{day}T23:59:59Z"),
            },
            contact: submitter.contact.clone(),
            report_id: report_id(&submitter.hostname, day, domain),
            policies,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The report as it is sent: JSON, gzip'd.
    pub fn gzip(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&self.to_json());
        gz.finish().unwrap_or_default()
    }
}

/// `<day>.<domain>@<hostname>`: unique per submitter, domain and day, and shaped like a
/// msg-id as the Subject of a mailed report wants it (5.3).
pub fn report_id(hostname: &str, day: Day, domain: &str) -> String {
    format!("{}.{domain}@{hostname}", day.to_string().replace('-', ""))
}

/// The attachment's name (5.3): `<submitter>!<policy domain>!<begin>!<end>.json.gz`, the
/// times in seconds since the epoch.
pub fn filename(hostname: &str, day: Day, domain: &str) -> String {
    format!(
        "{hostname}!{domain}!{}!{}.json.gz",
        day.start(),
        day.start() + 86_399
    )
}

#[cfg(test)]
mod tests {
    use super::super::{PolicyType, ResultType};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn report_shape() {
        let day = Day::parse("2026-11-23").unwrap();
        let submitter = Submitter {
            organization: "Example Inc.".into(),
            contact: "postmaster@example.com".into(),
            hostname: "relay.example.com".into(),
        };
        let mut failures = BTreeMap::new();
        failures.insert(
            FailureDetail {
                receiving_mx_hostname: Some("mx.b.example".into()),
                receiving_ip: Some("192.0.2.1".parse().unwrap()),
                ..FailureDetail::new(ResultType::CertificateExpired)
            },
            3,
        );
        let counts = vec![PolicyCounts {
            policy: ReportPolicy {
                kind: PolicyType::Sts,
                strings: vec!["version: STSv1".into(), "mode: enforce".into()],
                domain: "b.example".into(),
                mx_host: vec!["mx.b.example".into()],
            },
            successes: 5,
            failures,
        }];
        let r = Report::build(&submitter, day, "b.example", &counts);
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["organization-name"], "Example Inc.");
        assert_eq!(v["date-range"]["start-datetime"], "2026-11-23T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2026-11-23T23:59:59Z");
        assert_eq!(v["report-id"], "20261123.b.example@relay.example.com");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["mx-host"][0], "mx.b.example");
        assert_eq!(p["summary"]["total-successful-session-count"], 5);
        assert_eq!(p["summary"]["total-failure-session-count"], 3);
        let f = &p["failure-details"][0];
        assert_eq!(f["result-type"], "certificate-expired");
        assert_eq!(f["failed-session-count"], 3);
        assert_eq!(f["receiving-ip"], "192.0.2.1");
        assert!(f.get("sending-mta-ip").is_none());

        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.gzip()[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, r.to_json());
        assert_eq!(
            filename("relay.example.com", day, "b.example"),
            format!(
                "relay.example.com!b.example!{}!{}.json.gz",
                day.start(),
                day.start() + 86_399
            )
        );
    }
}

//! TLS reports against real parts: the test DNS server (`_smtp._tls` TXT), a real HTTPS
//! report endpoint, and the RFC 8460 JSON schema checked with python3-jsonschema.

use super::https_server::HttpsServer;
use super::test_ca::TestCa;
use super::{now, world, POLICY_1};
use crate::tls_policy::mta_sts;
use crate::tls_policy::report::store::Store;
use crate::tls_policy::report::{self, FailureDetail, ReportPolicy, ResultType, SessionResult};
use std::net::IpAddr;

/// Report messages queued, as the relay's queue would get them.
#[derive(Default)]
struct Queued(std::sync::Mutex<Vec<report::mail::ReportMessage>>);

impl report::send::ReportQueue for Queued {
    fn queue(
        &self,
        message: report::mail::ReportMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>
    {
        Box::pin(async move {
            let mut q = self.0.lock().unwrap();
            q.push(message);
            Ok(format!("Q{}", q.len()))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_reports_go_to_each_rua_once() {
    use report::send::{Sender, Sent};
    let w = world();
    let reports = HttpsServer::start(TestCa::server_config(
        &w.ca.issue("reports", &["reports.a.example"]),
        &[b"http/1.1"],
    ));
    let IpAddr::V4(ip) = reports.addr.ip() else {
        unreachable!()
    };
    w.dns.add_a("reports.a.example", ip);
    reports.set("/v1/tlsrpt", 201, "text/plain", b"");
    w.dns.add_txt_str(
        "_smtp._tls.a.example",
        "v=TLSRPTv1; rua=mailto:tls-reports@a.example,https://reports.a.example/v1/tlsrpt?k=1",
    );
    w.dns.fail("_smtp._tls.c.example");

    let store = Store::open(w.spool.path()).unwrap();
    let yesterday = now() - 86_400;
    let day = report::store::Day::of(yesterday);
    for (domain, failure) in [
        ("a.example", None),
        ("a.example", Some(ResultType::CertificateExpired)),
        ("b.example", None),
        ("c.example", None),
    ] {
        let result = SessionResult {
            report_domain: domain.into(),
            policy: ReportPolicy::none(domain),
            failure: failure.map(FailureDetail::new),
        };
        store.record(&result, yesterday).unwrap();
    }
    let submitter = report::json::Submitter {
        organization: "Example Inc.".into(),
        contact: "postmaster@example.com".into(),
        hostname: "relay.example.com".into(),
    };
    let queue = Queued::default();
    let sender = Sender {
        resolver: &w.fetcher.resolver,
        trust: &w.fetcher.trust,
        store: &store,
        submitter: &submitter,
        queue: &queue,
    };
    let sent = sender.send_day(day, now()).await.unwrap();
    let of = |d: &str| sent.iter().find(|(x, _)| x == d).unwrap().1.clone();
    match of("a.example") {
        Sent::To(list) => {
            assert_eq!(list.len(), 2);
            assert!(list.iter().all(|(_, r)| r.is_ok()), "{list:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(of("b.example"), Sent::NotWanted(_)));
    assert!(matches!(of("c.example"), Sent::Later(_)));

    // The POST: gzip'd JSON of a.example's day.
    let posts = reports.seen();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].method, "POST");
    assert_eq!(
        posts[0].content_type.as_deref(),
        Some("application/tlsrpt+gzip")
    );
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&posts[0].body[..]),
        &mut json,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        v["policies"][0]["summary"]["total-successful-session-count"],
        1
    );
    assert_eq!(
        v["policies"][0]["summary"]["total-failure-session-count"],
        1
    );
    assert_eq!(v["policies"][0]["policy"]["policy-domain"], "a.example");

    // The message for the mailto, from <>.
    {
        let queued = queue.0.lock().unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].recipient, "tls-reports@a.example");
        assert_eq!(queued[0].sender, "");
    }

    // Again: a.example and b.example are done; c.example's record answers now.
    w.dns.heal("_smtp._tls.c.example");
    let again = sender.send_day(day, now()).await.unwrap();
    for (domain, s) in &again {
        match domain.as_str() {
            "c.example" => assert!(matches!(s, Sent::NotWanted(_)), "{s:?}"),
            _ => assert_eq!(s, &Sent::Already),
        }
    }
    assert_eq!(reports.seen().len(), 1);
}

/// Validate report JSON with Python's jsonschema (Debian's python3-jsonschema) against the
/// RFC 8460 schema in tests/data: `Ok` or the validator's complaint.
pub(super) fn schema_check(json: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(root.join("tests/support/tlsrpt_schema.py"))
        .arg(root.join("tests/data/tlsrpt-schema.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/install-test-deps.sh installs python3-jsonschema)");
    child.stdin.take().unwrap().write_all(json).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("No module named"),
        "python3-jsonschema is missing: run scripts/install-test-deps.sh\n{text}"
    );
    if out.status.success() && text.trim() == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn reports_validate_against_the_rfc_8460_schema() {
    let day = report::store::Day::parse("2026-11-23").unwrap();
    let submitter = report::json::Submitter {
        organization: "Example Inc.".into(),
        contact: "postmaster@example.com".into(),
        hostname: "relay.example.com".into(),
    };
    let mut failures = std::collections::BTreeMap::new();
    failures.insert(
        FailureDetail {
            sending_mta_ip: Some("192.0.2.7".parse().unwrap()),
            receiving_mx_hostname: Some("mx1.a.example".into()),
            receiving_ip: Some("2001:db8::25".parse().unwrap()),
            failure_reason_code: Some("NotValidForName".into()),
            ..FailureDetail::new(ResultType::CertificateHostMismatch)
        },
        2,
    );
    let policy = crate::tls_policy::mta_sts::StsPolicy::parse(POLICY_1).unwrap();
    let counts = vec![
        report::store::PolicyCounts {
            policy: mta_sts::report_policy("a.example", &policy),
            successes: 7,
            failures,
        },
        report::store::PolicyCounts {
            policy: mta_sts::report_unfetched("a.example"),
            successes: 0,
            failures: [(FailureDetail::new(ResultType::StsPolicyFetchError), 1)]
                .into_iter()
                .collect(),
        },
    ];
    let r = report::json::Report::build(&submitter, day, "a.example", &counts);
    schema_check(&r.to_json()).unwrap();
    // The check can fail: a misspelt field or an unknown policy type is refused.
    let bad = String::from_utf8(r.to_json()).unwrap();
    assert!(schema_check(bad.replace("\"sts\"", "\"mta-sts\"").as_bytes()).is_err());
    assert!(schema_check(bad.replace("mx-host", "mx_host").as_bytes()).is_err());
    assert!(schema_check(bad.replace("report-id", "id").as_bytes()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_sends_past_days_not_today_and_forgets_old_ones() {
    use report::send::{round, Round};
    use report::store::{Day, KEEP_DAYS};
    let w = world();
    w.dns.add_txt_str(
        "_smtp._tls.a.example",
        "v=TLSRPTv1; rua=mailto:tls-reports@a.example",
    );
    let store = Store::open(w.spool.path()).unwrap();
    let result = SessionResult {
        report_domain: "a.example".into(),
        policy: ReportPolicy::none("a.example"),
        failure: None,
    };
    let now = now();
    for days_ago in [0, 1, 2, KEEP_DAYS + 3] {
        store.record(&result, now - days_ago * 86_400).unwrap();
    }
    let queue = Queued::default();
    let ctx = Round {
        resolver: w.fetcher.resolver.clone(),
        trust: w.fetcher.trust.clone(),
        submitter: report::json::Submitter {
            organization: "Example Inc.".into(),
            contact: "postmaster@example.com".into(),
            hostname: "relay.example.com".into(),
        },
    };
    assert_eq!(round(&store, &queue, &ctx, now).await.unwrap(), 2);
    assert_eq!(
        queue.0.lock().unwrap().len(),
        2,
        "yesterday and the day before"
    );
    assert_eq!(
        store.days().unwrap(),
        vec![
            Day::of(now - 2 * 86_400),
            Day::of(now - 86_400),
            Day::of(now)
        ],
        "the old day is gone"
    );
    // A second round (a restart) sends nothing again.
    assert_eq!(round(&store, &queue, &ctx, now).await.unwrap(), 0);
    // Tomorrow, today's goes.
    assert_eq!(round(&store, &queue, &ctx, now + 86_400).await.unwrap(), 1);
}

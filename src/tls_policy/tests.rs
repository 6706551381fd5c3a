//! The policy layer against real parts on loopback: the test DNS server (`_mta-sts` TXT,
//! `mta-sts.<domain>` A records) and a real HTTPS policy server with a certificate from a test
//! CA the fetcher trusts.

#[path = "../../tests/support/dns_server.rs"]
mod dns_server;
#[path = "../../tests/support/https_server.rs"]
mod https_server;
#[path = "../../tests/support/test_ca.rs"]
pub(super) mod test_ca;

use super::mta_sts::{Fetcher, Lookup, StsCache, StsMode};
use super::report::ResultType;
use super::trust::Trust;
use super::*;
use dns_server::DnsServer;
use https_server::HttpsServer;
use std::net::IpAddr;
use std::time::Duration;
use test_ca::TestCa;

const PATH: &str = "/.well-known/mta-sts.txt";
const POLICY_1: &str = "version: STSv1\nmode: enforce\nmx: mx1.a.example\nmax_age: 86400\n";
const POLICY_2: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: *.mail.a.example\r\nmax_age: 604800\r\n";

struct World {
    dns: DnsServer,
    ca: TestCa,
    server: HttpsServer,
    fetcher: Fetcher,
    spool: tempfile::TempDir,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A policy host for a.example serving POLICY_1 under TXT id 1.
fn world() -> World {
    let dns = DnsServer::start();
    let ca = TestCa::new();
    let issued = ca.issue("policy", &["mta-sts.a.example"]);
    let server = HttpsServer::start(TestCa::server_config(&issued, &[b"http/1.1"]));
    let IpAddr::V4(ip) = server.addr.ip() else {
        unreachable!()
    };
    dns.add_a("mta-sts.a.example", ip);
    dns.add_txt_str("_mta-sts.a.example", "v=STSv1; id=1");
    server.set(PATH, 200, "text/plain; charset=utf-8", POLICY_1.as_bytes());
    let fetcher = Fetcher {
        resolver: crate::resolver::build(Some(&[dns.addr()])).unwrap(),
        trust: Trust::load(Some(&ca.ca_file())).unwrap(),
        limits: https::Limits {
            timeout: Duration::from_secs(20),
            max_body: 64 * 1024,
        },
    };
    World {
        dns,
        ca,
        server,
        fetcher,
        spool: tempfile::tempdir().unwrap(),
    }
}

fn policy_of(l: &Lookup) -> Option<(String, StsMode, Vec<String>)> {
    match l {
        Lookup::Policy { cached, .. } => Some((
            cached.id.clone(),
            cached.policy.mode,
            cached.policy.mx_hosts(),
        )),
        Lookup::None { .. } => None,
    }
}

/// Poll `f` until it holds, for at most 20 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_once_cached_refetched_on_a_new_id_and_kept_across_restarts() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    let l = cache.lookup(&w.fetcher, "a.example", now()).await;
    assert_eq!(
        policy_of(&l),
        Some(("1".into(), StsMode::Enforce, vec!["mx1.a.example".into()]))
    );
    let seen = w.server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].host, "mta-sts.a.example");

    // Same id: the cache answers, no fetch.
    let l = cache.lookup(&w.fetcher, "a.example", now()).await;
    assert_eq!(policy_of(&l).unwrap().0, "1");
    assert_eq!(w.server.count(PATH), 1);

    // A new id announces a new policy: fetched and applied.
    w.server.set(PATH, 200, "text/plain", POLICY_2.as_bytes());
    w.dns.remove("_mta-sts.a.example");
    w.dns.add_txt_str("_mta-sts.a.example", "v=STSv1; id=2");
    let l = cache.lookup(&w.fetcher, "a.example", now()).await;
    assert_eq!(
        policy_of(&l),
        Some((
            "2".into(),
            StsMode::Enforce,
            vec!["*.mail.a.example".into()]
        ))
    );
    assert_eq!(w.server.count(PATH), 2);

    // A restart reads the policy back from the spool; the server being down does not matter.
    w.server.stop();
    let reopened = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    let l = reopened.lookup(&w.fetcher, "a.example", now()).await;
    assert_eq!(policy_of(&l).unwrap().0, "2");
    // Its lines are kept as served, for the reports.
    let Lookup::Policy { cached, .. } = l else {
        unreachable!()
    };
    assert_eq!(cached.policy.lines()[0], "version: STSv1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_keeps_the_cached_policy_and_is_not_repeated_at_once() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    assert!(policy_of(&cache.lookup(&w.fetcher, "a.example", now()).await).is_some());

    // The policy server goes down as a new id is published.
    w.server.stop();
    w.dns.remove("_mta-sts.a.example");
    w.dns.add_txt_str("_mta-sts.a.example", "v=STSv1; id=2");
    let l = cache.lookup(&w.fetcher, "a.example", now()).await;
    match &l {
        Lookup::Policy {
            cached,
            fetch_failed: Some(e),
        } => {
            assert_eq!(cached.id, "1", "the cached policy stays in force");
            assert_eq!(e.result, ResultType::StsPolicyFetchError);
        }
        other => panic!("{other:?}"),
    }
    // Within the back-off the same id is not fetched again (the server would answer now).
    w.server.start_again();
    let l = cache.lookup(&w.fetcher, "a.example", now()).await;
    assert_eq!(policy_of(&l).unwrap().0, "1");
    assert_eq!(w.server.count(PATH), 1);
    // After it, it is.
    let later = now() + mta_sts::cache::FETCH_BACKOFF_SECS + 1;
    let l = cache.lookup(&w.fetcher, "a.example", later).await;
    assert_eq!(policy_of(&l).unwrap().0, "2");

    // A removed TXT record does not void the cached policy (RFC 8461 3.1).
    w.dns.remove("_mta-sts.a.example");
    let l = cache.lookup(&w.fetcher, "a.example", later).await;
    assert_eq!(policy_of(&l).unwrap().0, "2");
    // Nor a DNS failure.
    w.dns.fail("_mta-sts.a.example");
    let l = cache.lookup(&w.fetcher, "a.example", later).await;
    assert_eq!(policy_of(&l).unwrap().0, "2");
    // An expired one is no policy.
    let l = cache
        .lookup(&w.fetcher, "a.example", later + 604_800 + 1)
        .await;
    assert!(
        matches!(
            l,
            Lookup::None {
                fetch_failed: None,
                ..
            }
        ),
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cached_policy_and_no_fetch_means_no_policy_with_the_reason() {
    let w = world();
    w.server.stop();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    match cache.lookup(&w.fetcher, "a.example", now()).await {
        Lookup::None {
            fetch_failed: Some(e),
            ..
        } => assert_eq!(e.result, ResultType::StsPolicyFetchError),
        other => panic!("{other:?}"),
    }
    // A domain without a record has no policy and nothing is fetched.
    match cache.lookup(&w.fetcher, "b.example", now()).await {
        Lookup::None {
            fetch_failed: None,
            reason,
        } => assert!(reason.contains("no _mta-sts"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failures_are_named_as_reports_name_them() {
    let w = world();
    let fetch = |domain: &'static str| {
        let f = w.fetcher.clone();
        async move { mta_sts::fetch::fetch(&f.resolver, &f.trust, domain, f.limits).await }
    };
    assert!(fetch("a.example").await.is_ok());

    // A certificate for another name.
    let IpAddr::V4(ip) = w.server.addr.ip() else {
        unreachable!()
    };
    w.dns.add_a("mta-sts.wrong.example", ip);
    let e = fetch("wrong.example").await.unwrap_err();
    assert_eq!(e.result, ResultType::StsWebpkiInvalid, "{e}");

    // A certificate from a CA nobody trusts.
    let stranger = TestCa::new();
    let other = HttpsServer::start(TestCa::server_config(
        &stranger.issue("p", &["mta-sts.c.example"]),
        &[b"http/1.1"],
    ));
    let IpAddr::V4(other_ip) = other.addr.ip() else {
        unreachable!()
    };
    w.dns.add_a("mta-sts.c.example", other_ip);
    other.set(PATH, 200, "text/plain", POLICY_1.as_bytes());
    assert_eq!(
        fetch("c.example").await.unwrap_err().result,
        ResultType::StsWebpkiInvalid
    );

    // An expired certificate.
    let expired = HttpsServer::start(TestCa::server_config(
        &w.ca.issue_expired("old", &["mta-sts.d.example"]),
        &[b"http/1.1"],
    ));
    let IpAddr::V4(expired_ip) = expired.addr.ip() else {
        unreachable!()
    };
    w.dns.add_a("mta-sts.d.example", expired_ip);
    assert_eq!(
        fetch("d.example").await.unwrap_err().result,
        ResultType::StsWebpkiInvalid
    );

    // Redirects are not followed.
    w.server
        .redirect(PATH, "https://mta-sts.a.example/elsewhere.txt");
    let e = fetch("a.example").await.unwrap_err();
    assert_eq!(e.result, ResultType::StsPolicyFetchError);
    assert!(e.message.contains("301"), "{e}");
    assert_eq!(w.server.count("/elsewhere.txt"), 0);

    // Not found.
    w.server.set(PATH, 404, "text/plain", b"no");
    assert_eq!(
        fetch("a.example").await.unwrap_err().result,
        ResultType::StsPolicyFetchError
    );
    // Not text/plain, too large, not a policy.
    w.server.set(PATH, 200, "text/html", POLICY_1.as_bytes());
    assert_eq!(
        fetch("a.example").await.unwrap_err().result,
        ResultType::StsPolicyInvalid
    );
    let mut big = POLICY_1.to_string();
    while big.len() <= 64 * 1024 {
        big.push_str("x-padding: 0123456789012345678901234567890123456789\n");
    }
    w.server.set(PATH, 200, "text/plain", big.as_bytes());
    let e = fetch("a.example").await.unwrap_err();
    assert_eq!(e.result, ResultType::StsPolicyInvalid, "{e}");
    w.server
        .set(PATH, 200, "text/plain", b"version: STSv1\nmode: enforce\n");
    assert_eq!(
        fetch("a.example").await.unwrap_err().result,
        ResultType::StsPolicyInvalid
    );
    // No policy host in DNS.
    assert_eq!(
        fetch("nohost.example").await.unwrap_err().result,
        ResultType::StsPolicyFetchError
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_in_use_are_refreshed_before_they_expire() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    assert!(policy_of(&cache.lookup(&w.fetcher, "a.example", now()).await).is_some());
    // Nothing is due yet.
    assert_eq!(cache.refresh_due(&w.fetcher, now()).await, 0);
    // Half the max_age later (one day at most) it is fetched again, same id or not.
    let due = now() + 43_200 + 1;
    assert_eq!(cache.refresh_due(&w.fetcher, due).await, 1);
    eventually("the refresh fetch", || w.server.count(PATH) == 2).await;
    // A delivery at that time needs no fetch of its own: the refreshed policy is current.
    eventually("the refreshed policy stored", || {
        cache
            .cached("a.example", due)
            .is_some_and(|c| c.fetched >= due)
    })
    .await;
    assert_eq!(cache.refresh_due(&w.fetcher, due).await, 0);
    // Expired and gone from the spool.
    let gone = due + 86_400 * 2;
    cache.refresh_due(&w.fetcher, gone).await;
    assert!(cache.cached("a.example", gone).is_none());
    assert_eq!(
        std::fs::read_dir(w.spool.path().join("mta-sts"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_one_fetch() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (cache, fetcher) = (cache.clone(), w.fetcher.clone());
        tasks.push(tokio::spawn(async move {
            cache.lookup(&fetcher, "a.example", now()).await
        }));
    }
    for t in tasks {
        assert!(policy_of(&t.await.unwrap()).is_some());
    }
    assert_eq!(w.server.count(PATH), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_policy_says_which_hosts_and_what_they_must_do() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    let d = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Enforce, "A.Example", now()).await;
    assert!(d.enforced());
    assert_eq!(d.domain, "a.example");
    assert_eq!(d.admits("mx1.a.example"), Admission::Admitted);
    match d.admits("mx2.a.example") {
        Admission::Refused { failure, text } => {
            assert_eq!(failure.result, ResultType::ValidationFailure);
            assert_eq!(failure.failure_reason_code.as_deref(), Some(MX_MISMATCH));
            assert!(text.starts_with("4.7.5 mx2.a.example is not an MX host allowed by the MTA-STS policy of a.example"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let host = d.host("mx1.a.example");
    assert!(host.enforced() && host.checks_certificate());
    assert_eq!(host.label(), TlsPolicy::MtaSts);
    assert!(
        d.describe().contains("MTA-STS enforce of a.example"),
        "{}",
        d.describe()
    );

    // The relay in testing mode: checked, reported, never refused.
    let t = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Testing, "a.example", now()).await;
    assert!(!t.enforced());
    assert_eq!(t.admits("mx2.a.example"), Admission::Admitted);
    assert!(t.mismatch("mx2.a.example").is_some());
    assert!(t.host("mx2.a.example").checks_certificate());
    assert!(!t.host("mx2.a.example").enforced());

    // Off: not even looked up.
    let o = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Off, "a.example", now()).await;
    assert_eq!(o.host("mx1.a.example").label(), TlsPolicy::None);

    // A domain that withdrew its policy (mode none) has none.
    w.server.set(
        PATH,
        200,
        "text/plain",
        b"version: STSv1\nmode: none\nmax_age: 86400\n",
    );
    w.dns.remove("_mta-sts.a.example");
    w.dns.add_txt_str("_mta-sts.a.example", "v=STSv1; id=3");
    let n = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Enforce, "a.example", now()).await;
    assert!(!n.enforced());
    assert_eq!(n.admits("anything.example"), Admission::Admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_counted_in_the_metric_and_the_report_store() {
    let w = world();
    let cache = Arc::new(StsCache::open(w.spool.path(), now()).unwrap());
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Store::open(w.spool.path()).unwrap());
    let recorder = Recorder {
        metrics: metrics.clone(),
        store: Some(store.clone()),
    };
    let d = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Enforce, "a.example", now()).await;
    let host = d.host("mx1.a.example");
    recorder.session("Q1", &d, &host, None, now());
    recorder.session(
        "Q2",
        &d,
        &host,
        Some(FailureDetail::new(ResultType::StarttlsNotSupported)),
        now(),
    );
    let plain = DomainPolicy::none("b.example");
    recorder.session("Q3", &plain, &plain.host("mx.b.example"), None, now());
    let text = metrics.render();
    assert!(
        text.contains("dkim_relay_tls_policy_total{policy=\"mta-sts\",result=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("dkim_relay_tls_policy_total{policy=\"mta-sts\",result=\"failed\"} 1"));
    assert!(text.contains("dkim_relay_tls_policy_total{policy=\"none\",result=\"ok\"} 1"));
    let day = store.read_day(report::store::Day::of(now())).unwrap();
    let a = &day["a.example"][0];
    assert_eq!(a.policy.kind, report::PolicyType::Sts);
    assert_eq!(a.policy.mx_host, ["mx1.a.example"]);
    assert_eq!((a.successes, a.failed()), (1, 1));
    assert_eq!(
        day["b.example"][0].policy.kind,
        report::PolicyType::NoPolicyFound
    );
}

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

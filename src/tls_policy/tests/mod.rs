//! The policy layer against real parts on loopback: the test DNS server (`_mta-sts` TXT,
//! `mta-sts.<domain>` A records) and a real HTTPS policy server with a certificate from a test
//! CA the fetcher trusts. The TLS report side is in [`reports`].

mod reports;

#[path = "../../../tests/support/dns_server.rs"]
mod dns_server;
#[path = "../../../tests/support/https_server.rs"]
mod https_server;
#[path = "../../../tests/support/test_ca.rs"]
pub(super) mod test_ca;
#[path = "../../../tests/support/tlsrpt_check.rs"]
mod tlsrpt_check;

use super::mta_sts::{Fetcher, Lookup, StsCache, StsMode};
use super::report::ResultType;
use super::*;
use crate::trust::Trust;
use dns_server::DnsServer;
use https_server::HttpsServer;
use std::net::IpAddr;
use std::time::Duration;
use test_ca::TestCa;

const PATH: &str = "/.well-known/mta-sts.txt";
pub(super) const POLICY_1: &str =
    "version: STSv1\nmode: enforce\nmx: mx1.a.example\nmax_age: 86400\n";
const POLICY_2: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: *.mail.a.example\r\nmax_age: 604800\r\n";

pub(super) struct World {
    pub(super) dns: DnsServer,
    pub(super) ca: TestCa,
    pub(super) server: HttpsServer,
    pub(super) fetcher: Fetcher,
    pub(super) spool: tempfile::TempDir,
}

pub(super) use crate::clock::unix_now as now;

/// A policy host for a.example serving POLICY_1 under TXT id 1.
pub(super) fn world() -> World {
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
        trust: Trust::for_delivery(Some(&ca.ca_file())).unwrap(),
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
    let host = d.host_policy();
    assert!(host.enforced() && host.checks_certificate());
    assert_eq!(host.label(), TlsPolicy::MtaSts);

    // The relay in testing mode: checked, reported, never refused.
    let t = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Testing, "a.example", now()).await;
    assert!(!t.enforced());
    assert_eq!(t.admits("mx2.a.example"), Admission::Admitted);
    assert!(t.mismatch("mx2.a.example").is_some());
    assert!(t.host_policy().checks_certificate());
    assert!(!t.host_policy().enforced());

    // Off: not even looked up.
    let o = DomainPolicy::lookup(&cache, &w.fetcher, MtaStsMode::Off, "a.example", now()).await;
    assert_eq!(o.host_policy().label(), TlsPolicy::None);

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
    let host = d.host_policy();
    recorder.session("Q1", &d, &host, None, now());
    recorder.session(
        "Q2",
        &d,
        &host,
        Some(FailureDetail::new(ResultType::StarttlsNotSupported)),
        now(),
    );
    let plain = DomainPolicy::none("b.example");
    recorder.session("Q3", &plain, &plain.host_policy(), None, now());
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

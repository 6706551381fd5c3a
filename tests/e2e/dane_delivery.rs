//! DANE end to end: the real binary delivering to real receiving SMTP servers on loopback,
//! its `dns.nameservers` a real validating resolver (unbound, tests/support/unbound.rs) serving
//! zones signed in the test, one unsigned, and one with a spoiled TLSA signature. The
//! certificates and the TLSA records over them are made in the test (tests/support/dane_certs.rs).
//!
//! Where MTA-STS meets DANE, a real HTTPS policy server on port 443 of an address of its own
//! (tests/support/https_server.rs) serves the policy, with a certificate from a CA made in the
//! test that the relay trusts through `delivery.ca_file`; it also takes TLS reports.
//!
//! Each case has its own recipient domain and MX host address (127.0.0.2x), so the cases run in
//! parallel against one unbound; MX delivery uses one destination port, each test its own.

use crate::dane_certs;
use crate::eventually;
use crate::https_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;
use crate::test_ca;
use crate::unbound;

use dane_certs::{Ca, Issued, Validity};
use https_server::HttpsServer;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use test_ca::TestCa;
use unbound::{Unbound, Zone};

/// The MTA-STS policy of both.dane.test and both2.dane.test: enforce, mx.both2 only.
const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mx.both2.dane.test\nmax_age: 86400\n";

/// The certificates the receiving servers present, as PEM files, and the resolver serving the
/// zones that publish TLSA records over them.
struct World {
    unbound: Unbound,
    /// The public-CA side: the roots `delivery.ca_file` adds, the MTA-STS policy server and
    /// the TLS report endpoint.
    pki: TestCa,
    https: HttpsServer,
    _dir: tempfile::TempDir,
    /// (chain, key) PEM files by case.
    files: std::collections::HashMap<&'static str, (PathBuf, PathBuf)>,
}

fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| unbound::available().then(build_world))
        .as_ref()
}

fn build_world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut files = std::collections::HashMap::new();
    let mut keep = |label: &'static str, leaf: &Issued, chain: &[&Issued]| {
        files.insert(label, dane_certs::write_pem(dir.path(), label, leaf, chain));
    };
    // DANE-EE: a self-signed certificate whose key the TLSA record pins.
    let ee = dane_certs::self_signed(&["mx.ee-ok.dane.test"], Validity::Current);
    keep("ee-ok", &ee, &[]);
    // A host whose certificate is not the one published.
    let published = dane_certs::self_signed(&["mx.ee-bad.dane.test"], Validity::Current);
    let presented = dane_certs::self_signed(&["mx.ee-bad.dane.test"], Validity::Current);
    keep("ee-bad", &presented, &[]);
    // DANE-TA: the domain's own CA, sent in the chain (RFC 7672 3.2.1).
    let ca = Ca::root("dane.test private CA");
    let ta_leaf = ca.issue(&["mx.ta.dane.test"], Validity::Current);
    keep("ta", &ta_leaf, &[&ca.issued]);
    // Opportunistic TLS with any certificate (insecure zone).
    let any = dane_certs::self_signed(&["mx.insecure.test"], Validity::Current);
    keep("any", &any, &[]);
    // DANE against MTA-STS: a self-signed certificate the TLSA records pin, on a host the
    // enforced MTA-STS policy does not list...
    let both = dane_certs::self_signed(&["mx.both.dane.test"], Validity::Current);
    keep("both", &both, &[]);
    // ...and a certificate MTA-STS would accept (a trusted CA, the right name), on a host the
    // policy lists, that the TLSA records do not pin.
    let pki = TestCa::new();
    let both2 = pki.issue("both2", &["mx.both2.dane.test"]);

    let https = HttpsServer::start(TestCa::server_config(
        &pki.issue(
            "https",
            &[
                "mta-sts.both.dane.test",
                "mta-sts.both2.dane.test",
                "reports.dane.test",
            ],
        ),
        &[b"http/1.1"],
    ));
    https.set(
        "/.well-known/mta-sts.txt",
        200,
        "text/plain",
        POLICY.as_bytes(),
    );
    https.set("/v1/tlsrpt", 200, "text/plain", b"thanks");
    let https_ip = https.addr.ip();

    let dane = Zone::signed("dane.test")
        .record("ee-ok IN MX 10 mx.ee-ok")
        .record("mx.ee-ok IN A 127.0.0.21")
        .record(&format!("_25._tcp.mx.ee-ok IN TLSA {}", ee.tlsa(3, 1, 1)))
        .record("ee-bad IN MX 10 mx.ee-bad")
        .record("mx.ee-bad IN A 127.0.0.22")
        .record(&format!(
            "_25._tcp.mx.ee-bad IN TLSA {}",
            published.tlsa(3, 1, 1)
        ))
        .record("ta IN MX 10 mx.ta")
        .record("mx.ta IN A 127.0.0.23")
        .record(&format!(
            "_25._tcp.mx.ta IN TLSA {}",
            ca.issued.tlsa(2, 0, 1)
        ))
        .record("nostarttls IN MX 10 mx.nostarttls")
        .record("mx.nostarttls IN A 127.0.0.24")
        .record(&format!(
            "_25._tcp.mx.nostarttls IN TLSA {}",
            ee.tlsa(3, 1, 1)
        ))
        .record("_smtp._tls.ee-bad IN TXT \"v=TLSRPTv1; rua=https://reports.dane.test/v1/tlsrpt\"")
        .record(&format!("reports IN A {https_ip}"))
        .record("both IN MX 10 mx.both")
        .record("mx.both IN A 127.0.0.25")
        .record(&format!("_25._tcp.mx.both IN TLSA {}", both.tlsa(3, 1, 1)))
        .record("_mta-sts.both IN TXT \"v=STSv1; id=1\"")
        .record(&format!("mta-sts.both IN A {https_ip}"))
        .record("both2 IN MX 10 mx.both2")
        .record("mx.both2 IN A 127.0.0.28")
        .record(&format!(
            "_25._tcp.mx.both2 IN TLSA {}",
            published.tlsa(3, 1, 1)
        ))
        .record("_mta-sts.both2 IN TXT \"v=STSv1; id=1\"")
        .record(&format!("mta-sts.both2 IN A {https_ip}"));
    let insecure = Zone::unsigned("insecure.test")
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.26")
        // Insecure records count as none: this one, which matches nothing, must not matter.
        .record(&format!("_25._tcp.mx IN TLSA {}", published.tlsa(3, 1, 1)));
    let bogus = Zone::signed("bogus.test")
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.27")
        .record(&format!("_25._tcp.mx IN TLSA {}", any.tlsa(3, 1, 1)))
        .spoil("_25._tcp.mx", "TLSA");
    files.insert("both2", (both2.chain.clone(), both2.key.clone()));
    World {
        unbound: Unbound::start(vec![dane, insecure, bogus]),
        pki,
        https,
        _dir: dir,
        files,
    }
}

impl World {
    /// A receiving server at `ip` on `port` presenting `case`'s certificate (STARTTLS), or
    /// none (no STARTTLS).
    async fn sink(&self, ip: &str, port: u16, case: Option<&str>) -> Sink {
        let tls = case.map(|c| {
            let (chain, key) = &self.files[c];
            (chain.display().to_string(), key.display().to_string())
        });
        Sink::start_on(
            &format!("{ip}:{port}"),
            tls.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        )
        .await
    }

    /// A relay delivering MX mail to `port`, trusting unbound's AD bit (and MTA-STS enforced,
    /// with the test CA trusted).
    fn relay(&self, port: u16) -> Relay {
        Relay::start(&self.config(port, "1s", ""))
    }

    fn config(&self, port: u16, retry: &str, more: &str) -> String {
        format!(
            "delivery:\n  mode: mx\n  port: {port}\n  retry: [{retry}]\n  connect_timeout: 5s\n  \
             command_timeout: 10s\n  mta_sts: enforce\n  ca_file: {ca}\n{more}dns:\n  \
             nameservers: [\"{dns}\"]\n  dnssec: trust-ad\n  check_interval: 0s\n",
            ca = self.pki.ca_file().display(),
            dns = self.unbound.addr
        )
    }
}

async fn submit(relay: &Relay, to: &str) {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg = format!(
        "From: App <app@example.com>\r\nTo: {to}\r\nSubject: dane\r\nMessage-ID: <dane-{to}>\r\n\r\nHello.\r\n"
    );
    let r = c.send("app@example.com", &[to], msg.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
}

/// `dkim_relay_tls_policy_total{policy,result}` as the relay's /metrics says.
fn policy_count(relay: &Relay, policy: &str, result: &str) -> u64 {
    let (_, body) = relay::http_get(relay.metrics, "/metrics").unwrap_or_default();
    let series = format!("dkim_relay_tls_policy_total{{policy=\"{policy}\",result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The relay logged a DANE failure of this RFC 8460 result type.
fn assert_failure(relay: &Relay, result: &str) {
    let log = relay.log();
    assert!(
        log.lines().any(|l| l.contains("TLS policy failure")
            && l.contains("policy=\"dane\"")
            && l.contains(&format!("result=\"{result}\""))),
        "{log}"
    );
}

/// Wait until the relay counted a session under `policy` with `result`.
async fn counted(relay: &Relay, policy: &str, result: &str) -> bool {
    eventually::eventually(Duration::from_secs(30), || {
        policy_count(relay, policy, result) >= 1
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ee_matching_delivers_over_tls() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.21", port, Some("ee-ok")).await;
    let relay = w.relay(port);
    submit(&relay, "user@ee-ok.dane.test").await;
    let got = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls, "delivered over TLS");
    assert!(counted(&relay, "dane", "ok").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ee_not_matching_defers_and_sends_nothing() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.22", port, Some("ee-bad")).await;
    let relay = w.relay(port);
    submit(&relay, "user@ee-bad.dane.test").await;
    assert!(counted(&relay, "dane", "failed").await, "{}", relay.log());
    assert_failure(&relay, "tlsa-invalid");
    assert_eq!(sink.mails(), 0, "no MAIL after a failed DANE check");
    assert!(sink.messages().is_empty());
    assert_eq!(relay.queued(), 1, "still queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_ta_with_a_chain_to_it_delivers() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.23", port, Some("ta")).await;
    let relay = w.relay(port);
    submit(&relay, "user@ta.dane.test").await;
    let got = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls);
    assert!(
        counted(&relay, "dane", "ok").await,
        "authenticated through DANE-TA"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsa_without_starttls_defers() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.24", port, None).await;
    let relay = w.relay(port);
    submit(&relay, "user@nostarttls.dane.test").await;
    assert!(counted(&relay, "dane", "failed").await, "{}", relay.log());
    assert_failure(&relay, "starttls-not-supported");
    assert_eq!(sink.mails(), 0, "never in clear text");
    assert_eq!(relay.queued(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_zone_gets_opportunistic_tls() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.26", port, Some("any")).await;
    let relay = w.relay(port);
    submit(&relay, "user@insecure.test").await;
    let got = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls, "STARTTLS when offered, certificate unchecked");
    assert!(counted(&relay, "none", "ok").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_tlsa_answer_defers() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let sink = w.sink("127.0.0.27", port, Some("any")).await;
    let relay = w.relay(port);
    submit(&relay, "user@bogus.test").await;
    assert!(counted(&relay, "dane", "failed").await, "{}", relay.log());
    assert_failure(&relay, "dnssec-invalid");
    assert_eq!(
        sink.connections(),
        0,
        "a host whose TLSA records are bogus is not contacted"
    );
    assert_eq!(relay.queued(), 1);
}

/// DANE and MTA-STS disagree, both ways; DANE decides (RFC 8461 2). both.dane.test's host is
/// not in its enforced MTA-STS policy and its certificate chains to no trusted CA, but it
/// matches the host's TLSA records: delivered. both2.dane.test's host is in the policy with a
/// certificate MTA-STS accepts, but its TLSA records pin another key: deferred, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_decides_over_mta_sts() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let both = w.sink("127.0.0.25", port, Some("both")).await;
    let both2 = w.sink("127.0.0.28", port, Some("both2")).await;
    let relay = w.relay(port);
    submit(&relay, "user@both.dane.test").await;
    submit(&relay, "user@both2.dane.test").await;
    let got = both.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls);
    assert!(counted(&relay, "dane", "failed").await, "{}", relay.log());
    assert_eq!(both2.mails(), 0, "{}", relay.log());
    assert_eq!(relay.queued(), 1);
    assert_eq!(
        policy_count(&relay, "mta-sts", "ok"),
        0,
        "no session under MTA-STS"
    );
    assert_eq!(policy_count(&relay, "mta-sts", "failed"), 0);
    // The policy was fetched (MTA-STS is on), and still did not decide.
    assert!(
        w.https
            .seen()
            .iter()
            .any(|s| s.path == "/.well-known/mta-sts.txt"),
        "{}",
        relay.log()
    );
}

/// Each DANE outcome in the day's TLS report (RFC 8460): policy type `tlsa` with the TLSA
/// records as policy string, a success, and the failures by result type — `tlsa-invalid`,
/// `starttls-not-supported`, `dnssec-invalid` — valid against the RFC's JSON schema; and the
/// report reaching a domain's https `rua`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_report_has_the_dane_outcomes() {
    let Some(w) = world() else { return };
    let port = relay::free_port();
    let _ok = w.sink("127.0.0.21", port, Some("ee-ok")).await;
    let _bad = w.sink("127.0.0.22", port, Some("ee-bad")).await;
    let _plain = w.sink("127.0.0.24", port, None).await;
    let _bogus = w.sink("127.0.0.27", port, Some("any")).await;
    // One attempt per message (retry 1h): each outcome counted once.
    let relay = Relay::start_named(
        "relay.example.com",
        &w.config(
            port,
            "1h",
            "  tls_reports:\n    organization: Example Inc.\n    contact: tls@example.com\n",
        ),
    );
    for to in [
        "a@ee-ok.dane.test",
        "b@ee-bad.dane.test",
        "c@nostarttls.dane.test",
        "d@bogus.test",
    ] {
        submit(&relay, to).await;
    }
    assert!(
        eventually::eventually(Duration::from_secs(30), || {
            policy_count(&relay, "dane", "ok") == 1 && policy_count(&relay, "dane", "failed") == 3
        })
        .await,
        "{}",
        relay.log()
    );

    let out = tls_report(&relay, &["--day", "today"]).await;
    let reports: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let by_domain = |d: &str| {
        reports
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policies"][0]["policy"]["policy-domain"] == d)
            .unwrap_or_else(|| panic!("no report for {d}: {out}"))
            .clone()
    };
    let ok = &by_domain("ee-ok.dane.test")["policies"][0];
    assert_eq!(ok["policy"]["policy-type"], "tlsa");
    assert!(
        ok["policy"]["policy-string"][0]
            .as_str()
            .unwrap()
            .starts_with("3 1 1 "),
        "{ok}"
    );
    assert_eq!(ok["summary"]["total-successful-session-count"], 1);
    assert_eq!(ok["summary"]["total-failure-session-count"], 0);
    for (domain, result, mx) in [
        ("ee-bad.dane.test", "tlsa-invalid", "mx.ee-bad.dane.test"),
        (
            "nostarttls.dane.test",
            "starttls-not-supported",
            "mx.nostarttls.dane.test",
        ),
        ("bogus.test", "dnssec-invalid", "mx.bogus.test"),
    ] {
        let p = &by_domain(domain)["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "tlsa", "{p}");
        assert_eq!(p["summary"]["total-failure-session-count"], 1, "{p}");
        let f = &p["failure-details"][0];
        assert_eq!(f["result-type"], result, "{p}");
        assert_eq!(f["receiving-mx-hostname"], mx, "{p}");
    }
    // The records of bogus.test could not be had: no policy string for them.
    assert!(
        by_domain("bogus.test")["policies"][0]["policy"]["policy-string"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    for r in reports.as_array().unwrap() {
        schema_check(r.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}\n{r}"));
    }

    // Sent: ee-bad.dane.test asks for its reports at an https rua.
    let out = tls_report(&relay, &["--day", "today", "--send"]).await;
    assert!(
        out.contains("ee-bad.dane.test: https://reports.dane.test/v1/tlsrpt: HTTP 200"),
        "{out}"
    );
    let posted = w
        .https
        .seen()
        .into_iter()
        .find(|s| s.path == "/v1/tlsrpt")
        .expect("a report posted");
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(posted.body.as_slice()),
        &mut json,
    )
    .expect("gzip");
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        report["policies"][0]["failure-details"][0]["result-type"],
        "tlsa-invalid"
    );
}

/// `dkim-relay tls-report ARGS -c <relay config>`: its output (exit code 0 asserted).
async fn tls_report(relay: &Relay, args: &[&str]) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"));
    c.arg("tls-report").args(args).arg("-c").arg(&relay.config);
    let out = tokio::task::spawn_blocking(move || c.output().expect("run dkim-relay"))
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", relay.log());
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A TLS report checked against the RFC 8460 JSON schema (tests/data) with Python's
/// jsonschema (Debian's python3-jsonschema).
fn schema_check(json: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let root = std::path::Path::new(relay::ROOT);
    let mut child = std::process::Command::new("/usr/bin/python3")
        .arg(root.join("tests/support/tlsrpt_schema.py"))
        .arg(root.join("tests/data/tlsrpt-schema.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    child.stdin.take().unwrap().write_all(json).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.trim() == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

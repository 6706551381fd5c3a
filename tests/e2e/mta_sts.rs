//! End-to-end: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460), the real binary against real parts on
//! loopback — the test DNS server serving `_mta-sts`, `_smtp._tls`, MX and A records; a real
//! HTTPS policy server on port 443 of an address of its own (`mta-sts.<domain>` resolves to
//! it), with a certificate from a CA made in the test that the relay trusts through
//! `delivery.ca_file`; receiving SMTP servers offering STARTTLS with certificates from the same
//! CA, several "hosts" on one port at 127.0.0.1, .2, … (MX delivery uses one port).

use crate::dns_server;
use crate::https_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;
use crate::test_ca;
use crate::tlsrpt_check::schema_check;

use dns_server::DnsServer;
use https_server::HttpsServer;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use test_ca::TestCa;

const DOMAIN: &str = "sts.test";
const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
const WAIT: Duration = Duration::from_secs(30);

fn enforce_policy(mx: &str) -> String {
    format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 86400\n")
}

/// The recipient side: DNS, the CA, the policy server for sts.test, and the port every MX
/// host listens on.
struct World {
    dns: DnsServer,
    ca: TestCa,
    policy: HttpsServer,
    port: u16,
}

impl World {
    /// sts.test publishing `policy` under TXT id `id`.
    fn new(policy: &str, id: &str) -> World {
        let dns = DnsServer::start();
        for (name, value) in relay::dkim_records() {
            dns.add_txt_str(&name, &value);
        }
        let ca = TestCa::new();
        let issued = ca.issue("policy", &[&format!("mta-sts.{DOMAIN}")]);
        let server = HttpsServer::start(TestCa::server_config(&issued, &[b"http/1.1"]));
        let IpAddr::V4(ip) = server.addr.ip() else {
            unreachable!()
        };
        dns.add_a(&format!("mta-sts.{DOMAIN}"), ip);
        dns.add_txt_str(&format!("_mta-sts.{DOMAIN}"), &format!("v=STSv1; id={id}"));
        server.set(POLICY_PATH, 200, "text/plain", policy.as_bytes());
        World {
            dns,
            ca,
            policy: server,
            port: relay::free_port(),
        }
    }

    /// Publish a new policy under a new id.
    fn republish(&self, policy: &str, id: &str) {
        self.policy
            .set(POLICY_PATH, 200, "text/plain", policy.as_bytes());
        self.dns.remove(&format!("_mta-sts.{DOMAIN}"));
        self.dns
            .add_txt_str(&format!("_mta-sts.{DOMAIN}"), &format!("v=STSv1; id={id}"));
    }

    /// An MX host `name` (preference `pref`) at 127.0.0.`n`, offering STARTTLS with a
    /// certificate for `cert_names` (none: no STARTTLS).
    async fn mx(&self, name: &str, pref: u16, n: u8, cert_names: Option<&[&str]>) -> Sink {
        self.dns.add_mx(DOMAIN, pref, name);
        self.dns.add_a(name, Ipv4Addr::new(127, 0, 0, n));
        let issued = cert_names.map(|names| self.ca.issue(name, names));
        let paths = issued.as_ref().map(|i| {
            (
                i.chain.to_str().unwrap().to_string(),
                i.key.to_str().unwrap().to_string(),
            )
        });
        Sink::start_on(
            &format!("127.0.0.{n}:{}", self.port),
            paths.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
        )
        .await
    }

    /// The relay's delivery and DNS sections, retrying every second.
    fn config(&self, mta_sts: &str, more: &str) -> String {
        self.config_retrying(mta_sts, "1s", more)
    }

    fn config_retrying(&self, mta_sts: &str, retry: &str, more: &str) -> String {
        format!(
            "delivery:\n  mode: mx\n  port: {port}\n  retry: [{retry}]\n  connect_timeout: 5s\n  command_timeout: 10s\n  \
             mta_sts: {mta_sts}\n  ca_file: {ca}\n{more}dns:\n  nameservers: [\"{dns}\"]\n  check_interval: 0s\n",
            port = self.port,
            ca = self.ca.ca_file().display(),
            dns = self.dns.addr(),
        )
    }
}

async fn submit(relay: &Relay, to: &str, subject: &str) -> String {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg = format!(
        "From: App <app@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\nHello.\r\n"
    );
    let r = c.send("app@example.com", &[to], msg.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
    r.text.rsplit(' ').next().unwrap_or_default().to_string()
}

/// `dkim-relay ARGS -c <relay config>`: (exit code, stdout + stderr).
async fn command(relay: &Relay, args: &[&str]) -> (Option<i32>, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"));
    c.args(args).arg("-c").arg(&relay.config);
    let out = tokio::task::spawn_blocking(move || c.output().expect("run dkim-relay"))
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// `queue show ID` once its recipient has been tried and deferred with `needle` in the reply.
async fn deferred_with(relay: &Relay, id: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let shown = command(relay, &["queue", "show", id]).await.1;
        if shown.contains(needle) {
            return shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no deferral with {needle:?}:\n{shown}\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const STS_OK: &str = "dkim_relay_tls_policy_total{policy=\"mta-sts\",result=\"ok\"}";
const STS_FAILED: &str = "dkim_relay_tls_policy_total{policy=\"mta-sts\",result=\"failed\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_delivers_over_tls_to_an_mx_the_policy_lists() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w.mx("mx1.sts.test", 10, 1, Some(&["mx1.sts.test"])).await;
    let relay = Relay::start(&w.config("enforce", ""));
    submit(&relay, "user@sts.test", "valid").await;
    let got = mx1.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls, "delivered over TLS");
    assert_eq!(w.policy.count(POLICY_PATH), 1);
    let seen = w.policy.seen();
    assert_eq!(seen[0].host, "mta-sts.sts.test");
    assert!(relay.spool().join("mta-sts/sts.test.json").exists());
    assert_eq!(relay.metric(STS_OK), 1.0);
    assert_eq!(relay.metric(STS_FAILED), 0.0);
    assert!(
        relay.log().contains("MTA-STS policy fetched"),
        "{}",
        relay.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_never_uses_an_mx_outside_the_policy() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    // The only MX is one the policy does not list (with a certificate that would verify).
    let rogue = w
        .mx("rogue.sts.test", 5, 2, Some(&["rogue.sts.test"]))
        .await;
    let relay = Relay::start(&w.config("enforce", ""));
    let id = submit(&relay, "user@sts.test", "rogue").await;
    let shown = deferred_with(&relay, &id, "4.7.5").await;
    assert!(
        shown.contains("not an MX host allowed by the MTA-STS policy of sts.test"),
        "queue show names the policy:\n{shown}"
    );
    assert_eq!(rogue.connections(), 0, "never connected to the rogue MX");
    assert!(relay.metric(STS_FAILED) >= 1.0);

    // A listed MX appears: the mail goes there, still never to the rogue one (preferred).
    let mx1 = w.mx("mx1.sts.test", 10, 1, Some(&["mx1.sts.test"])).await;
    let got = mx1.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls);
    assert_eq!(rogue.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_defers_when_starttls_is_not_offered_and_sends_nothing_in_clear() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w.mx("mx1.sts.test", 10, 1, None).await;
    let relay = Relay::start(&w.config("enforce", ""));
    let id = submit(&relay, "user@sts.test", "stripped").await;
    let shown = deferred_with(&relay, &id, "does not offer STARTTLS").await;
    assert!(shown.contains("MTA-STS policy of sts.test"), "{shown}");
    assert!(mx1.connections() >= 1, "the host was tried");
    assert_eq!(mx1.mails(), 0, "no MAIL FROM in clear text");
    assert!(mx1.messages().is_empty());
    assert!(relay.metric(STS_FAILED) >= 1.0);
    assert_eq!(relay.metric(STS_OK), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_defers_on_a_certificate_for_another_name() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w
        .mx("mx1.sts.test", 10, 1, Some(&["mail.other.test"]))
        .await;
    let relay = Relay::start(&w.config("enforce", ""));
    let id = submit(&relay, "user@sts.test", "wrongname").await;
    let shown = deferred_with(&relay, &id, "certificate-host-mismatch").await;
    assert!(shown.contains("4.7.5"), "{shown}");
    assert!(shown.contains("MTA-STS policy of sts.test"), "{shown}");
    assert_eq!(
        mx1.mails(),
        0,
        "nothing sent over the unverified connection"
    );
    assert!(mx1.messages().is_empty());
    assert!(
        relay.log().contains("TLS policy failure"),
        "{}",
        relay.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_mode_delivers_and_records_the_failure() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w
        .mx("mx1.sts.test", 10, 1, Some(&["mail.other.test"]))
        .await;
    let relay = Relay::start_named(
        "relay.example.com",
        &w.config(
            "testing",
            "  tls_reports:\n    organization: Example Inc.\n",
        ),
    );
    submit(&relay, "user@sts.test", "testing").await;
    let got = mx1.wait_for(1, WAIT).await;
    assert_eq!(
        got.len(),
        1,
        "delivered despite the failure: {}",
        relay.log()
    );
    assert!(got[0].tls, "still over TLS");
    assert_eq!(relay.metric(STS_FAILED), 1.0);
    let (code, out) = command(&relay, &["tls-report", "--day", "today"]).await;
    assert_eq!(code, Some(0), "{out}");
    let reports: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let p = &reports[0]["policies"][0];
    assert_eq!(p["policy"]["policy-type"], "sts");
    assert_eq!(p["summary"]["total-failure-session-count"], 1);
    assert_eq!(
        p["failure-details"][0]["result-type"],
        "certificate-host-mismatch"
    );
    assert_eq!(
        p["failure-details"][0]["receiving-mx-hostname"],
        "mx1.sts.test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_policy_outlives_its_server_and_a_restart() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w.mx("mx1.sts.test", 10, 1, Some(&["mx1.sts.test"])).await;
    let mut relay = Relay::start(&w.config("enforce", ""));
    submit(&relay, "user@sts.test", "first").await;
    assert_eq!(mx1.wait_for(1, WAIT).await.len(), 1, "{}", relay.log());

    // The policy server goes down as a new id is announced, and a preferred MX the cached
    // policy does not list appears (what an attacker who controls DNS would do).
    w.policy.stop();
    w.dns.remove(&format!("_mta-sts.{DOMAIN}"));
    w.dns
        .add_txt_str(&format!("_mta-sts.{DOMAIN}"), "v=STSv1; id=2");
    let rogue = w
        .mx("rogue.sts.test", 5, 2, Some(&["rogue.sts.test"]))
        .await;
    submit(&relay, "user@sts.test", "second").await;
    assert_eq!(mx1.wait_for(2, WAIT).await.len(), 2, "{}", relay.log());
    assert_eq!(rogue.connections(), 0, "the cached policy still applies");
    assert!(
        relay.log().contains("MTA-STS policy fetch failed"),
        "{}",
        relay.log()
    );

    // And after a restart, from the spool.
    relay.kill9();
    relay.spawn();
    submit(&relay, "user@sts.test", "third").await;
    assert_eq!(mx1.wait_for(3, WAIT).await.len(), 3, "{}", relay.log());
    assert_eq!(rogue.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_id_is_fetched_and_applied() {
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    let mx1 = w.mx("mx1.sts.test", 10, 1, Some(&["mx1.sts.test"])).await;
    let relay = Relay::start(&w.config("enforce", ""));
    submit(&relay, "user@sts.test", "before").await;
    assert_eq!(mx1.wait_for(1, WAIT).await.len(), 1, "{}", relay.log());
    assert_eq!(w.policy.count(POLICY_PATH), 1);

    // The domain moves its mail to mx2 and says so with a new policy under a new id.
    w.dns.remove(DOMAIN);
    let mx2 = w.mx("mx2.sts.test", 10, 3, Some(&["mx2.sts.test"])).await;
    w.republish(&enforce_policy("mx2.sts.test"), "2");
    submit(&relay, "user@sts.test", "after").await;
    let got = mx2.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls);
    assert_eq!(w.policy.count(POLICY_PATH), 2, "refetched once");
    assert_eq!(mx1.messages().len(), 1);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).expect("gzip");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_tls_report_reaches_the_rua_signed_and_valid() {
    let policy =
        "version: STSv1\nmode: enforce\nmx: mx1.sts.test\nmx: *.mx.sts.test\nmax_age: 86400\n";
    let w = World::new(policy, "1");
    // Where sts.test wants its reports: a mailbox at reports.test (whose MX is a plain test
    // server without a policy) and an HTTPS endpoint.
    w.dns.add_txt_str(
        "_smtp._tls.sts.test",
        "v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://reports.sts.test/v1/tlsrpt",
    );
    w.dns.add_mx("reports.test", 10, "mx.reports.test");
    w.dns.add_a("mx.reports.test", Ipv4Addr::new(127, 0, 0, 9));
    let mailbox = Sink::start_on(&format!("127.0.0.9:{}", w.port), None).await;
    let endpoint = HttpsServer::start(TestCa::server_config(
        &w.ca.issue("reports", &["reports.sts.test"]),
        &[b"http/1.1"],
    ));
    let IpAddr::V4(endpoint_ip) = endpoint.addr.ip() else {
        unreachable!()
    };
    w.dns.add_a("reports.sts.test", endpoint_ip);
    endpoint.set("/v1/tlsrpt", 200, "text/plain", b"thanks");

    // One attempt per message (retry 1h): one good session, two failed ones.
    let relay = Relay::start_named(
        "relay.example.com",
        &w.config_retrying(
            "enforce",
            "1h",
            "  tls_reports:\n    organization: Example Inc.\n    contact: tls@example.com\n",
        ),
    );
    let mx1 = w.mx("mx1.sts.test", 10, 1, Some(&["mx1.sts.test"])).await;
    submit(&relay, "a@sts.test", "good").await;
    assert_eq!(mx1.wait_for(1, WAIT).await.len(), 1, "{}", relay.log());
    // mx1 leaves (its idle connection with it); the MX records now name other hosts.
    mx1.down();
    w.dns.remove(DOMAIN);
    let bad = w
        .mx("bad.mx.sts.test", 10, 2, Some(&["mail.other.test"]))
        .await;
    let id = submit(&relay, "b@sts.test", "badcert").await;
    deferred_with(&relay, &id, "certificate-host-mismatch").await;
    w.dns.remove(DOMAIN);
    let _rogue = w
        .mx("rogue.other.test", 10, 3, Some(&["rogue.other.test"]))
        .await;
    let id = submit(&relay, "c@sts.test", "rogue").await;
    deferred_with(&relay, &id, "not an MX host allowed").await;
    assert_eq!(bad.mails(), 0);

    // The day's report, sent now rather than after midnight.
    let (code, out) = command(&relay, &["tls-report", "--day", "today", "--send"]).await;
    assert_eq!(code, Some(0), "{out}\n{}", relay.log());
    assert!(
        out.contains("sts.test: mailto:tlsrpt@reports.test: queued as"),
        "{out}"
    );
    assert!(
        out.contains("sts.test: https://reports.sts.test/v1/tlsrpt: HTTP 200"),
        "{out}"
    );

    // By mail: from <>, signed with example.com's keys (the relay's hostname's domain).
    let got = mailbox.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    let m = &got[0];
    assert_eq!(m.sender, "");
    assert_eq!(m.recipients, ["tlsrpt@reports.test"]);
    let text = String::from_utf8_lossy(&m.data).to_string();
    assert!(
        text.contains("\r\nTLS-Report-Domain: sts.test\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nTLS-Report-Submitter: relay.example.com\r\n"),
        "{text}"
    );
    assert!(text.contains("Report Domain: sts.test"), "{text}");
    let (ok, why) = relay::dkimpy_verify(&m.data, &relay::dkim_records())
        .expect("dkimpy (python3-dkim) is required");
    assert!(ok, "dkimpy: {why}\n{text}");
    let signature = text
        .split("DKIM-Signature:")
        .nth(1)
        .unwrap()
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .replace(['\r', '\n', '\t', ' '], "");
    assert!(signature.contains("TLS-Report-Domain"), "{signature}");

    // The attachment: gzip'd JSON, valid per the RFC 8460 schema, with what happened.
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .unwrap();
    let part = parsed.attachments().next().expect("an attachment");
    assert!(part.is_content_type("application", "tlsrpt+gzip"));
    let name = part.attachment_name().unwrap_or_default().to_string();
    assert!(name.starts_with("relay.example.com!sts.test!"), "{name}");
    assert!(name.ends_with(".json.gz"), "{name}");
    let json = gunzip(&part.decoded());
    schema_check(&json).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(report["organization-name"], "Example Inc.");
    assert_eq!(report["contact-info"], "tls@example.com");
    let policies = report["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{report:#}");
    let p = &policies[0];
    assert_eq!(p["policy"]["policy-type"], "sts");
    assert_eq!(p["policy"]["policy-domain"], "sts.test");
    assert_eq!(
        p["policy"]["mx-host"],
        serde_json::json!(["mx1.sts.test", "*.mx.sts.test"])
    );
    assert_eq!(p["policy"]["policy-string"][0], "version: STSv1");
    assert_eq!(p["summary"]["total-successful-session-count"], 1);
    assert_eq!(p["summary"]["total-failure-session-count"], 2);
    let details = p["failure-details"].as_array().unwrap();
    let of = |t: &str| details.iter().find(|d| d["result-type"] == t).cloned();
    let mismatch = of("certificate-host-mismatch").expect("certificate-host-mismatch");
    assert_eq!(mismatch["receiving-mx-hostname"], "bad.mx.sts.test");
    assert_eq!(mismatch["receiving-ip"], "127.0.0.2");
    assert_eq!(mismatch["failed-session-count"], 1);
    let outside = of("validation-failure").expect("validation-failure");
    assert_eq!(outside["receiving-mx-hostname"], "rogue.other.test");
    assert_eq!(outside["failure-reason-code"], "mx-not-in-mta-sts-policy");

    // By HTTPS: the same report.
    let posts = endpoint.seen();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].content_type.as_deref(),
        Some("application/tlsrpt+gzip")
    );
    assert_eq!(gunzip(&posts[0].body), json);

    // Once a day: a second send sends nothing.
    let (code, out) = command(&relay, &["tls-report", "--day", "today", "--send"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sts.test: sent before"), "{out}");
    assert_eq!(endpoint.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_gets_through_the_very_failure_it_reports() {
    // sts.test takes its reports at its own MX, whose certificate is for another name: the
    // enforced policy holds ordinary mail, but a report (TLS-Required: No) must get through.
    let w = World::new(&enforce_policy("mx1.sts.test"), "1");
    w.dns.add_txt_str(
        "_smtp._tls.sts.test",
        "v=TLSRPTv1; rua=mailto:tlsrpt@sts.test",
    );
    let mx1 = w
        .mx("mx1.sts.test", 10, 1, Some(&["mail.other.test"]))
        .await;
    let relay = Relay::start_named(
        "relay.example.com",
        &w.config_retrying(
            "enforce",
            "1h",
            "  tls_reports:\n    contact: tls@example.com\n",
        ),
    );
    let id = submit(&relay, "user@sts.test", "held").await;
    deferred_with(&relay, &id, "certificate-host-mismatch").await;

    let (code, out) = command(&relay, &["tls-report", "--day", "today", "--send"]).await;
    assert_eq!(code, Some(0), "{out}");
    let got = mx1.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert_eq!(got[0].recipients, ["tlsrpt@sts.test"]);
    assert_eq!(got[0].sender, "");
    assert!(got[0].tls, "still over TLS, only not verified");
    let text = String::from_utf8_lossy(&got[0].data).to_string();
    assert!(text.contains("\r\nTLS-Required: No\r\n"), "{text}");
    // The ordinary message still waits.
    assert!(command(&relay, &["queue", "show", &id])
        .await
        .1
        .contains("user@sts.test"));
}

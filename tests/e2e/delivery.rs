//! End-to-end tests of the delivery engine, on loopback with the real binary, a real DNS
//! server and real receiving SMTP servers: DSNs (RFC 3464) for permanent failures, null MX,
//! MX fallback and the memory of dead hosts, the TLS policies, relay_host with AUTH, and
//! connection reuse with bounded concurrency.
//!
//! Several "hosts" share one port on different loopback addresses (127.0.0.1, 127.0.0.2, …),
//! because MX delivery uses one destination port for every host.

use crate::dns_server;
use crate::eventually;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use dns_server::DnsServer;
use eventually::eventually;
use mail_auth::{AuthenticatedMessage, DkimResult};
use relay::Relay;
use smtp_client::Client;
use smtp_sink::{Delivered, Sink};
use std::time::Duration;

/// DNS with the dev DKIM records, example.com's MX (where DSNs to app@example.com go) at
/// `sender_mx_ip`, and example.net's MX at 127.0.0.1.
fn dns(sender_mx_ip: &str) -> DnsServer {
    let dns = DnsServer::start();
    for (name, value) in relay::dkim_records() {
        dns.add_txt_str(&name, &value);
    }
    dns.add_mx("example.com", 10, "mx.example.com");
    dns.add_a("mx.example.com", sender_mx_ip.parse().unwrap());
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    dns
}

fn mx_config(dns: &DnsServer, port: u16, more: &str) -> String {
    format!(
        "delivery:\n  mode: mx\n  port: {port}\n  retry: [1s]\n  connect_timeout: 5s\n  command_timeout: 10s\n{more}dns:\n  nameservers: [\"{}\"]\n",
        dns.addr()
    )
}

/// A client authenticated as `app` on the relay's plain loopback listener.
async fn client(relay: &Relay) -> Client {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    let r = c.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    c
}

async fn submit(relay: &Relay, to: &[&str], subject: &str) {
    let mut c = client(relay).await;
    let msg = format!(
        "From: App <app@example.com>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\n\r\nHello.\r\n",
        to.join(", ")
    );
    let r = c.send("app@example.com", to, msg.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
}

fn dsns(messages: &[Delivered]) -> Vec<Delivered> {
    messages
        .iter()
        .filter(|m| m.sender.is_empty())
        .cloned()
        .collect()
}

/// The leaf parts of a DSN as (content type, body text), after checking its top level.
fn dsn_parts(raw: &[u8]) -> Vec<(String, String)> {
    let msg = mail_parser::MessageParser::new()
        .parse(raw)
        .expect("DSN parses");
    let ct = msg.root().content_type().expect("Content-Type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("report")),
        "{}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    msg.parts()
        .filter(|p| !p.is_multipart())
        .map(|p| {
            let t = p
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_default();
            (t, String::from_utf8_lossy(&p.decoded()).into_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_recipients_get_one_signed_dsn_at_the_senders_mx() {
    let dns = dns("127.0.0.1");
    let sink = Sink::start(None).await;
    sink.script_rcpt("nobody@example.net", &["550 5.1.1 nobody here"]);
    sink.script_rcpt("gone@example.net", &["550 5.1.1 mailbox gone"]);
    // A hostname under example.com: the relay holds example.com's keys, so DSNs are signed.
    let relay = Relay::start_named("relay.example.com", &mx_config(&dns, sink.addr.port(), ""));
    submit(
        &relay,
        &["nobody@example.net", "ok@example.net", "gone@example.net"],
        "bounce-me",
    )
    .await;
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "{}", relay.log());
    let original: Vec<&Delivered> = got.iter().filter(|m| !m.sender.is_empty()).collect();
    assert_eq!(original.len(), 1);
    assert_eq!(original[0].recipients, vec!["ok@example.net".to_string()]);

    let bounces = dsns(&got);
    assert_eq!(bounces.len(), 1, "one DSN for both failed recipients");
    let dsn = &bounces[0];
    assert_eq!(dsn.recipients, vec!["app@example.com".to_string()]);
    let parts = dsn_parts(&dsn.data);
    let status = parts
        .iter()
        .find(|(t, _)| t == "message/delivery-status")
        .map(|(_, b)| b.clone())
        .expect("a message/delivery-status part");
    for (rcpt, reply) in [
        ("nobody@example.net", "550 5.1.1 nobody here"),
        ("gone@example.net", "550 5.1.1 mailbox gone"),
    ] {
        assert!(
            status.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
            "{status}"
        );
        assert!(
            status.contains(&format!("Diagnostic-Code: smtp; {reply}")),
            "{status}"
        );
    }
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5.1.1"), "{status}");
    assert!(!status.contains("ok@example.net"), "{status}");
    let headers = parts
        .iter()
        .find(|(t, _)| t == "text/rfc822-headers")
        .map(|(_, b)| b.clone())
        .expect("the original headers");
    assert!(headers.contains("Subject: bounce-me"), "{headers}");

    // Signed with example.com's keys, and the signatures verify.
    let resolver = dkim_relay::resolver::build(Some(&[dns.addr()])).unwrap();
    let parsed = AuthenticatedMessage::parse(&dsn.data).expect("parse DSN");
    let results = resolver.verify_dkim(&parsed).await;
    assert_eq!(results.len(), 2, "{}", String::from_utf8_lossy(&dsn.data));
    for r in &results {
        assert_eq!(r.result(), &DkimResult::Pass, "{r:?}");
    }

    // Nothing more: no DSN about the DSN, no second DSN, the queue is empty.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(relay.queued(), 0, "{}", relay.log());
}

/// Submit a message to a mix of refused and accepted recipients and one to refused
/// recipients only; the sink must see the right deliveries and one DSN per message.
async fn refusals_at_the_envelope(sink: &Sink) {
    let dns = dns("127.0.0.1");
    sink.script_rcpt("nobody@example.net", &["550 5.1.1 nobody here"]);
    sink.script_rcpt("gone@example.net", &["550 5.1.1 mailbox gone"]);
    let relay = Relay::start(&mx_config(&dns, sink.addr.port(), ""));
    submit(&relay, &["nobody@example.net", "ok@example.net"], "mixed").await;
    submit(&relay, &["gone@example.net"], "all-refused").await;
    let got = sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "{}", relay.log());
    let originals: Vec<&Delivered> = got.iter().filter(|m| !m.sender.is_empty()).collect();
    assert_eq!(originals.len(), 1, "{originals:?}");
    assert_eq!(originals[0].recipients, vec!["ok@example.net".to_string()]);
    let bounces = dsns(&got);
    assert_eq!(bounces.len(), 2, "one DSN per message");
    for dsn in &bounces {
        assert_eq!(dsn.recipients, vec!["app@example.com".to_string()]);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 3, "no empty message went through");
    assert_eq!(relay.queued(), 0, "{}", relay.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelining_server_gets_the_envelope_in_one_batch() {
    let sink = Sink::start(None).await;
    refusals_at_the_envelope(&sink).await;
    // MAIL came with RCPT and DATA right behind it (RFC 2920), for every transaction.
    assert_eq!(
        sink.pipelined(),
        sink.mails(),
        "{} of {}",
        sink.pipelined(),
        sink.mails()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_pipelining_gets_one_command_at_a_time() {
    let sink = Sink::start(None).await;
    sink.no_pipelining();
    refusals_at_the_envelope(&sink).await;
    assert_eq!(sink.pipelined(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn null_mx_bounces_without_a_connection_attempt() {
    // The sender's MX is 127.0.0.2; 127.0.0.1 would be the null-MX domain's implicit MX.
    let dns = dns("127.0.0.2");
    let port = relay::free_port();
    let dsn_sink = Sink::start_on(&format!("127.0.0.2:{port}"), None).await;
    let other = Sink::start_on(&format!("127.0.0.1:{port}"), None).await;
    dns.add_mx("nomail.test", 0, ".");
    dns.add_a("nomail.test", "127.0.0.1".parse().unwrap());
    let relay = Relay::start(&mx_config(&dns, port, ""));
    submit(&relay, &["someone@nomail.test"], "null-mx").await;
    let got = dsn_sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert_eq!(got[0].sender, "");
    let parts = dsn_parts(&got[0].data);
    let status = &parts
        .iter()
        .find(|(t, _)| t == "message/delivery-status")
        .expect("status part")
        .1;
    assert!(
        status.contains("Final-Recipient: rfc822; someone@nomail.test"),
        "{status}"
    );
    assert!(status.contains("null MX"), "{status}");
    assert_eq!(other.connections(), 0, "no connection for a null-MX domain");
    eventually(Duration::from_secs(10), || relay.queued() == 0).await;
    assert_eq!(relay.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mx_that_refuses_falls_back_to_the_next_and_is_remembered() {
    let dns = dns("127.0.0.1");
    let sink = Sink::start(None).await;
    // mx1 is preferred but nothing listens at either of its addresses.
    dns.remove("example.net");
    dns.add_mx("example.net", 10, "mx1.example.net");
    dns.add_mx("example.net", 20, "mx2.example.net");
    dns.add_aaaa("mx1.example.net", "::1".parse().unwrap());
    dns.add_a("mx1.example.net", "127.0.0.3".parse().unwrap());
    dns.add_a("mx2.example.net", "127.0.0.1".parse().unwrap());
    // Another domain on the same hosts: its mail cannot ride on example.net's pooled connection.
    dns.add_mx("example.org", 10, "mx1.example.net");
    dns.add_mx("example.org", 20, "mx2.example.net");
    // A long first retry interval: a dead address is then skipped for a minute.
    let mut config = mx_config(&dns, sink.addr.port(), "");
    config = config.replace("retry: [1s]", "retry: [1m]");
    let relay = Relay::start(&config);

    submit(&relay, &["a@example.net"], "fallback-1").await;
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    let log = relay.log();
    // Both addresses of mx1 were tried, IPv6 first, before mx2.
    let v6 = log.find("[::1]:").expect(&log);
    let v4 = log.find("127.0.0.3:").expect(&log);
    assert!(v6 < v4, "{log}");

    // The next messages go straight to mx2: mx1's addresses are remembered as down.
    submit(&relay, &["b@example.org"], "fallback-2").await;
    submit(&relay, &["c@example.org"], "fallback-3").await;
    let got = sink.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "{}", relay.log());
    let log = relay.log();
    assert_eq!(
        log.matches("next hop unreachable").count(),
        2,
        "each dead address tried once: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn required_tls_defers_at_a_server_without_starttls() {
    let dns = dns("127.0.0.1");
    let plain = Sink::start(None).await;
    let config = mx_config(&dns, plain.addr.port(), "  tls: required\n");
    let relay = Relay::start(&config);
    submit(&relay, &["a@example.net"], "needs-tls").await;
    eventually(Duration::from_secs(20), || relay.log().contains("deferred")).await;
    let log = relay.log();
    assert!(
        log.contains("does not offer STARTTLS and TLS is required"),
        "{log}"
    );
    assert!(plain.connections() >= 1);
    assert_eq!(plain.mails(), 0, "no MAIL in clear text");
    assert!(plain.messages().is_empty());
    assert_eq!(relay.queued(), 1, "deferred, not bounced");
    drop(relay);

    // The same policy delivers over STARTTLS where it is offered.
    let tls = Sink::start(Some((&relay::cert(), &relay::cert_key()))).await;
    let relay = Relay::start(&mx_config(&dns, tls.addr.port(), "  tls: required\n"));
    submit(&relay, &["a@example.net"], "with-tls").await;
    let got = tls.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls, "delivered inside TLS");
}

fn relay_host_config(dir: &std::path::Path, port: u16, password: &str, verify: bool) -> String {
    let pass = dir.join(format!("upstream-{port}-{verify}.pass"));
    std::fs::write(&pass, format!("{password}\n")).unwrap();
    format!(
        "delivery:\n  mode: relay_host\n  retry: [1s]\n  connect_timeout: 5s\n  command_timeout: 10s\n  relay_host:\n    address: \"127.0.0.1:{port}\"\n    tls: required\n    username: relay-user\n    password_file: {}\n    verify_certificate: {verify}\n",
        pass.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_host_with_auth_delivers_through_the_upstream() {
    let upstream = Sink::start(Some((&relay::cert(), &relay::cert_key()))).await;
    upstream.require_auth("relay-user", "upstream-secret");
    let dir = tempfile::tempdir().unwrap();
    // No DNS at all: everything goes to the upstream.
    let relay = Relay::start(&relay_host_config(
        dir.path(),
        upstream.addr.port(),
        "upstream-secret",
        false,
    ));
    submit(
        &relay,
        &["someone@far-away.test", "x@example.org"],
        "upstream",
    )
    .await;
    let got = upstream.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert!(got[0].tls);
    let mut rcpts = got[0].recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["someone@far-away.test", "x@example.org"]);
    drop(relay);

    // A wrong password defers (the upstream said 535), nothing is sent.
    let wrong = Relay::start(&relay_host_config(
        dir.path(),
        upstream.addr.port(),
        "not-it",
        false,
    ));
    submit(&wrong, &["someone@far-away.test"], "wrong-pass").await;
    eventually(Duration::from_secs(20), || wrong.log().contains("deferred")).await;
    assert!(
        wrong.log().contains("authentication at 127.0.0.1 failed"),
        "{}",
        wrong.log()
    );
    assert_eq!(wrong.queued(), 1);
    drop(wrong);

    // Certificate verification is on by default for a relay host: the self-signed development
    // certificate is refused and the message waits.
    let verifying = Relay::start(&relay_host_config(
        dir.path(),
        upstream.addr.port(),
        "upstream-secret",
        true,
    ));
    submit(&verifying, &["someone@far-away.test"], "verify").await;
    eventually(Duration::from_secs(20), || {
        verifying.log().contains("deferred")
    })
    .await;
    assert!(
        verifying.log().contains("TLS handshake"),
        "{}",
        verifying.log()
    );
    assert_eq!(upstream.messages().len(), 1);
    assert_eq!(verifying.queued(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_messages_to_one_host_share_a_few_connections() {
    let dns = dns("127.0.0.1");
    let sink = Sink::start(None).await;
    let relay = Relay::start(&mx_config(
        &dns,
        sink.addr.port(),
        "  max_connections_per_domain: 4\n",
    ));
    // Four clients submitting 50 messages each, at the same time.
    let mut clients = Vec::new();
    for k in 0..4 {
        let mut c = client(&relay).await;
        clients.push(tokio::spawn(async move {
            for i in 0..50 {
                let msg = format!(
                    "From: app@example.com\r\nTo: r{i}@example.net\r\nSubject: bulk {k}-{i}\r\n\r\nbody\r\n"
                );
                let r = c
                    .send("app@example.com", &[&format!("r{i}@example.net")], msg.as_bytes())
                    .await;
                assert_eq!(r.code, 250, "{r:?}");
            }
            c.cmd("QUIT").await;
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let got = sink.wait_for(200, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 200, "{}", relay.log());
    let connections = sink.connections();
    eprintln!(
        "200 messages: {connections} connections, at most {} at once, {} RSETs",
        sink.max_open(),
        sink.rsets()
    );
    assert!(
        connections <= 20,
        "200 messages over {connections} connections"
    );
    assert!(
        sink.max_open() <= 4,
        "per-domain limit: {}",
        sink.max_open()
    );
    assert!(
        sink.rsets() >= 150,
        "RSET between messages: {}",
        sink.rsets()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_old_a_message_bounces_with_the_last_reply() {
    let dns = dns("127.0.0.1");
    let sink = Sink::start(None).await;
    let tries: Vec<&str> = vec!["451 4.2.0 mailbox busy"; 50];
    sink.script_rcpt("busy@example.net", &tries);
    let relay = Relay::start(&mx_config(&dns, sink.addr.port(), "  max_age: 2s\n"));
    submit(&relay, &["busy@example.net"], "old").await;
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    let bounces = dsns(&got);
    assert_eq!(bounces.len(), 1, "{}", relay.log());
    let parts = dsn_parts(&bounces[0].data);
    let status = &parts
        .iter()
        .find(|(t, _)| t == "message/delivery-status")
        .expect("status part")
        .1;
    assert!(status.contains("busy@example.net"), "{status}");
    assert!(status.contains("mailbox busy"), "{status}");
    assert!(status.contains("gave up after"), "{status}");
    // The sink has the DSN once it answered 250; the relay removes it just after.
    eventually(Duration::from_secs(10), || relay.queued() == 0).await;
    assert_eq!(relay.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_still_being_retried_gets_one_delay_warning() {
    let dns = dns("127.0.0.1");
    let sink = Sink::start(None).await;
    let busy: Vec<&str> = vec!["451 4.2.0 mailbox busy"; 4];
    sink.script_rcpt("slow@example.net", &busy);
    let relay = Relay::start(&mx_config(&dns, sink.addr.port(), "  delay_warning: 1s\n"));
    submit(&relay, &["slow@example.net"], "slow").await;
    // The warning, then the message itself once the mailbox frees up.
    let got = sink.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "{}", relay.log());
    let warnings = dsns(&got);
    assert_eq!(warnings.len(), 1, "exactly one warning");
    assert_eq!(warnings[0].recipients, vec!["app@example.com".to_string()]);
    let text = String::from_utf8_lossy(&warnings[0].data).into_owned();
    assert!(text.contains("Subject: Delayed Mail"), "{text}");
    let parts = dsn_parts(&warnings[0].data);
    let status = &parts
        .iter()
        .find(|(t, _)| t == "message/delivery-status")
        .expect("status part")
        .1;
    assert!(
        status.contains("Final-Recipient: rfc822; slow@example.net"),
        "{status}"
    );
    assert!(status.contains("Action: delayed"), "{status}");
    assert!(status.contains("Status: 4.2.0"), "{status}");
    assert!(status.contains("Will-Retry-Until: "), "{status}");
    assert!(got.iter().any(|m| m.recipients == ["slow@example.net"]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 2, "no second warning, no bounce");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_destination_does_not_hold_up_the_others() {
    // slow.test answers each message after 2 s; fast.test at once. One connection per
    // destination, two overall: a backlog for slow.test must not take every delivery slot.
    let slow = Sink::start(None).await;
    slow.stall_after_data(Duration::from_secs(2));
    let fast = Sink::start(None).await;
    let config = format!(
        "delivery:\n  mode: mx\n  max_connections: 2\n  max_connections_per_domain: 1\n  retry: [1s]\n  command_timeout: 30s\n  routes:\n    slow.test: \"127.0.0.1:{}\"\n    fast.test: \"127.0.0.1:{}\"\n",
        slow.addr.port(),
        fast.addr.port()
    );
    let relay = Relay::start(&config);
    for i in 0..6 {
        submit(&relay, &["someone@slow.test"], &format!("slow-{i}")).await;
    }
    // Let the slow backlog reach the delivery side first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = std::time::Instant::now();
    submit(&relay, &["someone@fast.test"], "fast").await;
    let got = fast.wait_for(1, Duration::from_secs(30)).await;
    let waited = sent.elapsed();
    assert_eq!(got.len(), 1, "{}", relay.log());
    // Behind the backlog it would wait for at least three 2 s deliveries to slow.test.
    assert!(
        waited < Duration::from_secs(4),
        "fast.test waited {waited:?} behind slow.test ({} delivered there)\n{}",
        slow.messages().len(),
        relay.log()
    );
    assert!(slow.messages().len() < 6, "the backlog was still there");
    // The parked backlog still goes out, one connection at a time.
    let all = slow.wait_for(6, Duration::from_secs(40)).await;
    assert_eq!(all.len(), 6, "{}", relay.log());
    assert!(slow.max_open() <= 1, "one connection to slow.test");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.queued(), 0, "{}", relay.log());
}

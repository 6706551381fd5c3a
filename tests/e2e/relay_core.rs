//! End-to-end tests of the core relay, all on loopback with real sockets: the real binary, a
//! real DNS server answering MX/A/TXT, a real receiving SMTP server, signatures checked by
//! mail-auth and by dkimpy.

use crate::dns_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use dns_server::DnsServer;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::time::Duration;

fn mx_config(dns: &DnsServer, sink: &Sink, retry: &str) -> String {
    format!(
        "delivery:\n  mode: mx\n  port: {}\n  tls: opportunistic\n  retry: {retry}\n  connect_timeout: 5s\n  command_timeout: 10s\ndns:\n  nameservers: [\"{}\"]\n",
        sink.addr.port(),
        dns.addr()
    )
}

fn header_section(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    String::from_utf8_lossy(&message[..end]).into_owned()
}

async fn submit_tls(
    relay: &Relay,
    implicit: bool,
    from: &str,
    to: &[&str],
    message: &[u8],
) -> smtp_client::Reply {
    let mut c = if implicit {
        let mut c = Client::connect_tls(relay.implicit).await;
        assert_eq!(c.read_reply().await.code, 220);
        assert_eq!(c.cmd("EHLO client.test").await.code, 250);
        c
    } else {
        let mut c = Client::connect(relay.starttls).await;
        assert_eq!(c.read_reply().await.code, 220);
        let ehlo = c.cmd("EHLO client.test").await;
        assert!(ehlo.text.contains("STARTTLS"), "{ehlo:?}");
        c.starttls().await
    };
    let auth = c.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(auth.code, 235, "{auth:?}");
    let r = c.send(from, to, message).await;
    c.cmd("QUIT").await;
    r
}

const MESSAGE: &[u8] = b"From: App <app@example.com>\r\nTo: a@example.net\r\nCc: b@example.net\r\nBcc: secret@example.net\r\nSubject: core test\r\n\r\nHello,\r\nthis is a test.\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn submit_over_starttls_and_implicit_tls_is_signed_and_delivered_by_mx() {
    let dns = relay::mx_dns();
    let sink = Sink::start(None).await;
    let relay = Relay::start(&mx_config(&dns, &sink, "[1s]"));
    let rcpts = ["a@example.net", "b@example.net", "secret@example.net"];
    for implicit in [false, true] {
        let r = submit_tls(&relay, implicit, "app@example.com", &rcpts, MESSAGE).await;
        assert_eq!(r.code, 250, "{r:?}");
        assert!(r.text.contains("queued as"), "{r:?}");
    }
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "relay log:\n{}", relay.log());
    for m in &got {
        let mut rc = m.recipients.clone();
        rc.sort();
        assert_eq!(rc, rcpts, "every recipient delivered");
        assert_eq!(m.sender, "app@example.com");
        let headers = header_section(&m.data);
        assert!(
            !headers.to_ascii_lowercase().contains("\nbcc:"),
            "Bcc removed: {headers}"
        );
        assert!(headers.contains("\nDate: "), "Date added: {headers}");
        assert!(
            headers.contains("\nMessage-ID: <"),
            "Message-ID added: {headers}"
        );
        assert!(headers.starts_with("DKIM-Signature: "), "{headers}");
        let sigs: Vec<&str> = headers.split("DKIM-Signature:").skip(1).collect();
        assert_eq!(sigs.len(), 2);
        for s in &sigs {
            let unfolded: String = s.split("\r\n").collect::<Vec<_>>().join("");
            assert!(!unfolded.contains("; l="), "no l= tag: {unfolded}");
            let h = unfolded
                .split("h=")
                .nth(1)
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("");
            let from_count = h
                .split(':')
                .filter(|n| n.trim().eq_ignore_ascii_case("from"))
                .count();
            assert_eq!(from_count, 2, "From oversigned in h={h}");
        }
        relay::assert_verifies(&dns, &m.data).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tricky_bodies_verify_with_dkimpy() {
    let dns = relay::mx_dns();
    let sink = Sink::start(None).await;
    let relay = Relay::start(&mx_config(&dns, &sink, "[1s]"));
    let long_line = "x".repeat(998);
    let bodies: Vec<Vec<u8>> = vec![
        b"<p>html</p>\r\n  \r\n\t\r\n \r\n".to_vec(),
        "Grüße aus Köln — ünïcödé\r\n".as_bytes().to_vec(),
        format!("{long_line}\r\nend\r\n").into_bytes(),
        b"trailing spaces   \r\n\r\n\r\n".to_vec(),
        b".leading dot line\r\n..two\r\n".to_vec(),
    ];
    for body in &bodies {
        let mut msg = b"From: app@example.com\r\nTo: a@example.net\r\nSubject: body\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
        msg.extend_from_slice(body);
        let r = submit_tls(&relay, true, "app@example.com", &["a@example.net"], &msg).await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    let got = sink.wait_for(bodies.len(), Duration::from_secs(20)).await;
    assert_eq!(got.len(), bodies.len(), "{}", relay.log());
    for m in &got {
        relay::assert_verifies(&dns, &m.data).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sender_policy_refusals_name_the_problem_and_queue_nothing() {
    let dns = relay::mx_dns();
    let sink = Sink::start(None).await;
    let relay = Relay::start(&mx_config(&dns, &sink, "[1s]"));
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);

    // Envelope sender not allowed.
    let r = c.cmd("MAIL FROM:<ceo@evil.test>").await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.starts_with("5.7.1"), "{r:?}");

    let cases: Vec<(&[u8], u16, &str, &str)> = vec![
        (
            b"From: ceo@evil.test\r\nSubject: x\r\n\r\nb\r\n",
            550,
            "5.7.1",
            "not allowed",
        ),
        (
            b"From: \"app@example.com\" <x@evil.test>\r\n\r\nb\r\n",
            550,
            "5.7.1",
            "not allowed",
        ),
        (
            b"From: app@example.com\r\nFrom: app@example.com\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "exactly one From",
        ),
        (
            b"Subject: no from\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "exactly one From",
        ),
        (
            b"From: app@example.com, x@example.com\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "one mailbox",
        ),
        (
            b"From: app@example.com\r\nSubject: a\r\nsubject: b\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "Duplicate Subject",
        ),
        (
            b"From: app@example.com\r\nBroken header line\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "no colon",
        ),
        (
            b"From: app@example.com\r\nX: a\0b\r\n\r\nb\r\n",
            554,
            "5.6.0",
            "NUL",
        ),
    ];
    for (msg, code, status, words) in cases {
        let r = c.send("app@example.com", &["a@example.net"], msg).await;
        assert_eq!(r.code, code, "{}: {r:?}", String::from_utf8_lossy(msg));
        assert!(r.text.starts_with(status), "{r:?}");
        assert!(r.text.contains(words), "{r:?} should say {words}");
    }
    let long = format!(
        "From: app@example.com\r\nX-Long: {}\r\n\r\nb\r\n",
        "y".repeat(1000)
    );
    let r = c
        .send("app@example.com", &["a@example.net"], long.as_bytes())
        .await;
    assert_eq!((r.code, r.text.contains("998")), (554, true), "{r:?}");
    // A signing domain is needed: other.test's key exists, but this identity may not use it.
    let r = c
        .send(
            "app@example.com",
            &["a@example.net"],
            b"From: x@other.test\r\n\r\nb\r\n",
        )
        .await;
    assert_eq!(r.code, 550, "{r:?}");
    // The session is still usable after all that.
    let r = c
        .send(
            "app@example.com",
            &["a@example.net"],
            b"From: app@example.com\r\n\r\nok\r\n",
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "only the good message is delivered: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_identity_gets_530() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert_eq!(r.code, 530, "{r:?}");
    assert!(r.text.starts_with("5.7.0"), "{r:?}");
    // Failed AUTH does not help either.
    let r = c.auth_plain("app", "wrong").await;
    assert_eq!(r.code, 535, "{r:?}");
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert_eq!(r.code, 530, "{r:?}");
    assert_eq!(relay.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn recipient_deferred_twice_is_delivered_on_the_third_try() {
    let dns = relay::mx_dns();
    let sink = Sink::start(None).await;
    sink.script_rcpt(
        "slow@example.net",
        &["451 4.3.0 try later", "451 4.3.0 try later again"],
    );
    let relay = Relay::start(&mx_config(&dns, &sink, "[1s, 1s]"));
    let r = submit_tls(
        &relay,
        true,
        "app@example.com",
        &["slow@example.net"],
        MESSAGE,
    )
    .await;
    assert_eq!(r.code, 250);
    let got = sink.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert_eq!(got[0].recipients, vec!["slow@example.net".to_string()]);
    // Three transactions (the retries may ride on one pooled connection).
    assert!(sink.mails() >= 3, "three attempts: {}", sink.mails());
    let log = relay.log();
    assert_eq!(log.matches("deferred").count(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_acknowledged_is_lost_across_kill_9() {
    let dns = relay::mx_dns();
    // The receiver is down while the messages are submitted.
    let sink_port = relay::free_port();
    let extra = format!(
        "delivery:\n  mode: mx\n  port: {sink_port}\n  retry: [1s]\n  connect_timeout: 2s\ndns:\n  nameservers: [\"{}\"]\n",
        dns.addr()
    );
    let mut relay = Relay::start(&extra);
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    for i in 0..50 {
        let msg = format!(
            "From: app@example.com\r\nTo: a@example.net\r\nSubject: n{i}\r\n\r\nmessage {i}\r\n"
        );
        let r = c
            .send("app@example.com", &["a@example.net"], msg.as_bytes())
            .await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    relay.kill9();
    assert_eq!(
        relay.queued(),
        50,
        "all 50 acknowledged messages are in the spool"
    );
    let sink = Sink::start_on(&format!("127.0.0.1:{sink_port}"), None).await;
    relay.spawn();
    let got = sink.wait_for(50, Duration::from_secs(60)).await;
    let mut subjects: Vec<String> = got
        .iter()
        .filter_map(|m| {
            header_section(&m.data)
                .lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string)
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 50, "{}", relay.log());
    for m in got.iter().take(3) {
        relay::assert_verifies(&dns, &m.data).await;
    }
}

#[test]
fn check_config_points_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "hostname: relay.test\nlisteners:\n  - address: \"127.0.0.1:2525\"\n    tsl: none\n",
    )
    .unwrap();
    let syntax = dir.path().join("syntax.yaml");
    std::fs::write(
        &syntax,
        "hostname: relay.test\nlisteners:\n  - address: [\"127.0.0.1:2525\"\n    tls: none\n",
    )
    .unwrap();
    for (file, line, words) in [(&unknown, ":4:", "unknown key 'tsl'"), (&syntax, ":", "")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
            .arg("check-config")
            .arg("-c")
            .arg(file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{}{line}", file.display())), "{err}");
        assert!(err.contains(words), "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
        .arg("check-config")
        .arg("-c")
        .arg(&syntax)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line_no: usize = err
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        (3..=5).contains(&line_no),
        "syntax error names a line near the problem: {err}"
    );
}

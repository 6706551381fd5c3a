//! A receiver that goes down and comes back, end to end: the real binary relays to a real
//! receiving SMTP server (relay_host mode, one upstream) that the test stops and restarts on
//! the same port a few times while messages keep arriving. Every message arrives exactly once,
//! the backlog is gone within one retry interval of the last restart, and the log says what
//! happened once per outage rather than once per waiting message (issue 17).

use crate::eventually;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use eventually::eventually;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The retry interval, and so the probe interval of a closed host.
const RETRY: u64 = 3;

/// Submit messages `first..first + count` in one session, as an application sending a batch.
async fn submit(relay: &Relay, first: usize, count: usize) {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    for n in first..first + count {
        let msg = format!(
            "From: App <app@example.com>\r\nTo: someone@far-away.test\r\nSubject: outage-{n}\r\n\r\nHello.\r\n"
        );
        let r = c
            .send(
                "app@example.com",
                &["someone@far-away.test"],
                msg.as_bytes(),
            )
            .await;
        assert_eq!(r.code, 250, "{r:?}");
    }
    c.cmd("QUIT").await;
}

fn subjects(sink: &Sink) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for m in sink.messages() {
        let text = String::from_utf8_lossy(&m.data).into_owned();
        if let Some(s) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            *seen.entry(s.to_string()).or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_receiver_gets_every_message_once_and_the_log_stays_short() {
    let port = relay::free_port();
    let mut sink = Sink::start_on(&format!("127.0.0.1:{port}"), None).await;
    let relay = Relay::start(&format!(
        "delivery:\n  mode: relay_host\n  retry: [{RETRY}s]\n  connect_timeout: 5s\n  command_timeout: 10s\n  relay_host:\n    address: \"127.0.0.1:{port}\"\n    tls: none\nlog:\n  level: info\n"
    ));
    let mut sent = 0;
    // Three outages of 3 s, with 2 s up between them; messages keep coming throughout.
    for _ in 0..3 {
        submit(&relay, sent, 8).await;
        sent += 8;
        tokio::time::sleep(Duration::from_secs(2)).await;
        sink.down();
        for _ in 0..3 {
            submit(&relay, sent, 8).await;
            sent += 8;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sink.up().await;
    }
    let back = Instant::now();
    let drained = eventually(Duration::from_secs(60), || relay.queued() == 0).await;
    let took = back.elapsed();
    let log = relay.log();
    assert!(drained, "{} still queued\n{log}", relay.queued());
    // One retry interval, plus whole-second due times and the delivery of the backlog.
    assert!(
        took <= Duration::from_secs(RETRY + 2),
        "backlog gone {took:?} after the last restart\n{log}"
    );
    let seen = subjects(&sink);
    assert_eq!(seen.len(), sent, "every message arrived\n{log}");
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    let lines = log.lines().count();
    eprintln!("{sent} messages, {lines} log lines, backlog gone {took:?} after the last restart");
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    assert!(
        lines < 3 * sent,
        "{lines} log lines for {sent} messages:\n{log}"
    );
    assert!(log.contains("next hop closed"), "{log}");
    assert!(log.contains("next hop reopened"), "{log}");
    // What the metrics say of it.
    let (_, metrics) = relay::http_get(relay.metrics, "/metrics").expect("metrics");
    assert!(
        metrics.contains("dkim_relay_next_hop_closed 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("dkim_relay_delivery_probes_total{result=\"success\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_list_says_what_a_message_waits_for() {
    let port = relay::free_port();
    let relay = Relay::start(&format!(
        "delivery:\n  mode: relay_host\n  retry: [1m]\n  connect_timeout: 5s\n  relay_host:\n    address: \"127.0.0.1:{port}\"\n    tls: none\n"
    ));
    // Nothing listens: the first message's attempt fails and closes the host; the second is
    // held without an attempt.
    submit(&relay, 1, 1).await;
    assert!(
        eventually(Duration::from_secs(20), || relay
            .log()
            .contains("next hop closed"))
        .await
    );
    submit(&relay, 2, 1).await;
    let list = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
            .args(["queue", "-c"])
            .arg(&relay.config)
            .arg("list")
            .output()
            .expect("queue list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut out = String::new();
    let shown = eventually(Duration::from_secs(20), || {
        out = list();
        out.matches(&format!("waiting for 127.0.0.1:{port}, closed since "))
            .count()
            == 2
    })
    .await;
    assert!(shown, "{out}\n{}", relay.log());
    assert!(out.contains("after: connect: "), "{out}");
    assert!(out.contains("; probe at "), "{out}");
    // The first was tried once; the second never was, and is not charged.
    assert_eq!(out.matches("1 attempt(s)").count(), 1, "{out}");
    assert!(!out.contains("2 attempt(s)"), "{out}");
    assert!(!out.contains("remembered"), "{out}");
    // The status page says the same: both wait for the closed host, due at its probe time.
    let (code, status) = relay::http_get(relay.metrics, "/status?format=json").expect("status");
    assert_eq!(code, 200, "{status}");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    let waiting: Vec<serde_json::Value> = v["queue"]["oldest"]
        .as_array()
        .expect("oldest")
        .iter()
        .flat_map(|m| m["recipients"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.get("waiting_for").filter(|w| !w.is_null()).cloned())
        .collect();
    assert_eq!(waiting.len(), 2, "{status}");
    for w in waiting {
        assert!(
            w["host"]
                .as_str()
                .is_some_and(|h| h.ends_with(&format!("[127.0.0.1:{port}]"))),
            "{w}"
        );
        assert!(w["probe_at"].as_i64().is_some(), "{w}");
    }
}

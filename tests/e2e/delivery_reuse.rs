//! A pooled connection carries the next message with its RSET in the same write as the
//! envelope (RFC 2920), and a connection that refuses that RSET is left for a new one without
//! losing or doubling a message. The real binary delivering to a real receiving SMTP server on
//! loopback, each message submitted once the previous one is in, so the idle connection is
//! there to be reused.

use crate::dns_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use dns_server::DnsServer;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::time::Duration;

fn relay_to(sink: &Sink) -> (DnsServer, Relay) {
    let dns = DnsServer::start();
    for (name, value) in relay::dkim_records() {
        dns.add_txt_str(&name, &value);
    }
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let relay = Relay::start(&format!(
        "delivery:\n  mode: mx\n  port: {}\n  retry: [1s]\n  connect_timeout: 5s\n  command_timeout: 10s\ndns:\n  nameservers: [\"{}\"]\n",
        sink.addr.port(),
        dns.addr()
    ));
    (dns, relay)
}

/// Submit `n` messages one at a time, each only once the sink has the one before.
async fn one_after_another(relay: &Relay, sink: &Sink, n: usize) {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    for i in 0..n {
        let msg = format!(
            "From: app@example.com\r\nTo: r@example.net\r\nSubject: reuse {i}\r\n\r\nbody {i}\r\n"
        );
        let r = c
            .send("app@example.com", &["r@example.net"], msg.as_bytes())
            .await;
        assert_eq!(r.code, 250, "{r:?}");
        let got = sink.wait_for(i + 1, Duration::from_secs(30)).await;
        assert_eq!(got.len(), i + 1, "{}", relay.log());
    }
    c.cmd("QUIT").await;
}

fn subjects(sink: &Sink) -> Vec<String> {
    let mut s: Vec<String> = sink
        .messages()
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_string)
        })
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_connection_gets_its_rset_with_the_envelope() {
    let sink = Sink::start(None).await;
    let (_dns, relay) = relay_to(&sink);
    one_after_another(&relay, &sink, 6).await;
    assert_eq!(sink.connections(), 1, "{}", relay.log());
    assert_eq!(
        sink.rsets(),
        5,
        "one RSET before each message on the open connection"
    );
    assert_eq!(
        sink.rsets_pipelined(),
        5,
        "each RSET came in one write with MAIL, RCPT and DATA"
    );
    assert_eq!(subjects(&sink).len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_rset_leaves_the_connection_and_loses_nothing() {
    let sink = Sink::start(None).await;
    sink.refuse_rset();
    let (_dns, relay) = relay_to(&sink);
    one_after_another(&relay, &sink, 4).await;
    let want: Vec<String> = (0..4).map(|i| format!("Subject: reuse {i}")).collect();
    assert_eq!(subjects(&sink), want, "each message once: {}", relay.log());
    // The first went over a new connection; each later one tried the idle connection, whose
    // RSET was refused, and went over a new one.
    assert_eq!(sink.connections(), 4, "{}", relay.log());
    assert_eq!(sink.rsets(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_pipelining_gets_rset_on_its_own() {
    let sink = Sink::start(None).await;
    sink.no_pipelining();
    let (_dns, relay) = relay_to(&sink);
    one_after_another(&relay, &sink, 3).await;
    assert_eq!(sink.connections(), 1, "{}", relay.log());
    assert_eq!(sink.rsets(), 2);
    assert_eq!(sink.rsets_pipelined(), 0);
}

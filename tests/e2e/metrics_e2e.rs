//! The real relay's /metrics after real traffic: the counters moved as they should.
//! Set `DKIM_RELAY_E2E_SCRAPE_OUT=FILE` to keep the scrape (CI runs promtool on it).

use crate::relay;
use crate::smtp_client;

use relay::Relay;
use smtp_client::Client;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// The value of one series (`name{labels}` exactly as rendered), or 0.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_real_traffic() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    assert_eq!(get(relay.metrics, "/healthz").await.0, 200);
    assert_eq!(get(relay.metrics, "/readyz").await.0, 200);

    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("app", "wrong").await.code, 535);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let good = b"From: app@example.com\r\nTo: a@example.net\r\nSubject: m\r\n\r\nbody\r\n";
    assert_eq!(
        c.send("app@example.com", &["a@example.net"], good)
            .await
            .code,
        250
    );
    assert_eq!(c.cmd("MAIL FROM:<x@evil.test>").await.code, 550);
    let bad = b"From: app@example.com\r\nFrom: app@example.com\r\n\r\nbody\r\n";
    assert_eq!(
        c.send("app@example.com", &["a@example.net"], bad)
            .await
            .code,
        554
    );
    c.cmd("QUIT").await;

    // Delivery into the directory happens right after the 250.
    let start = Instant::now();
    let mut scrape = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        scrape = get(relay.metrics, "/metrics").await.1;
        if value(&scrape, "dkim_relay_deliveries_total{result=\"delivered\"}") >= 1.0
            // The gauge follows once the delivered message has left the spool.
            && value(&scrape, "dkim_relay_queue_messages") == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        value(&scrape, "dkim_relay_messages_received_total"),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            "dkim_relay_messages_signed_total{algorithm=\"rsa-sha256\",domain=\"example.com\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            "dkim_relay_messages_signed_total{algorithm=\"ed25519-sha256\",domain=\"example.com\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(&scrape, "dkim_relay_deliveries_total{result=\"delivered\"}"),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            "dkim_relay_auth_failures_total{mechanism=\"plain\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            "dkim_relay_messages_rejected_total{reason=\"sender_not_allowed\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        value(
            &scrape,
            "dkim_relay_messages_rejected_total{reason=\"header_policy\"}"
        ),
        1.0,
        "{scrape}"
    );
    assert!(
        value(&scrape, "dkim_relay_signing_seconds_count") >= 1.0,
        "{scrape}"
    );
    assert_eq!(value(&scrape, "dkim_relay_queue_messages"), 0.0, "{scrape}");
    let listener = format!(
        "dkim_relay_connections_total{{listener=\"{}\"}}",
        relay.plain
    );
    // Exactly this test's one session: the harness waits on /readyz, not on an SMTP probe.
    assert_eq!(value(&scrape, &listener), 1.0, "{scrape}");
    for name in [
        "dkim_relay_sessions_active",
        "dkim_relay_message_size_bytes_bucket",
        "dkim_relay_delivery_seconds_bucket",
        "dkim_relay_queue_oldest_age_seconds",
        "dkim_relay_tls_failures_total",
        "dkim_relay_dns_failures_total",
    ] {
        assert!(scrape.contains(name), "{name} missing:\n{scrape}");
    }
    if let Some(out) = std::env::var_os("DKIM_RELAY_E2E_SCRAPE_OUT") {
        std::fs::write(out, &scrape).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_when_the_spool_is_not_writable() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    assert_eq!(get(relay.metrics, "/readyz").await.0, 200);
    // Tests run as root here, where permissions do not stop writes: replace the directory the
    // probe writes into with a file instead.
    let tmp = relay.spool().join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let (code, body) = get(relay.metrics, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    assert_eq!(get(relay.metrics, "/readyz").await.0, 200);
}

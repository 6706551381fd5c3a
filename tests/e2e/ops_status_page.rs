//! The status page (`GET /status` on the metrics address) of the real binary, with a real
//! receiving server deferring one message with a reply that holds `<script>`, a real DNS
//! server that serves one of the two signing keys (so the DNS doctor reports a FAIL), and
//! Debian's headless Chromium reading the page as a phone would: it renders with no console
//! error and no request beyond the page itself, shows the deferred message's reply and the
//! failing check, and the `<script>` only as text. `?format=json` carries the same.
//!
//! The screenshot is written to target/status-page.png (docs/status-page.png is one).

use crate::chromium;
use crate::dns_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use dns_server::DnsServer;
use relay::Relay;
use serde_json::Value;
use smtp_client::Client;
use smtp_sink::Sink;
use std::time::{Duration, Instant};

const HOSTILE_REPLY: &str =
    "451 4.3.0 <script>document.title='pwned'</script> mailbox busy, try later";

async fn submit(relay: &Relay, rcpt: &str) {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg = format!("From: app@example.com\r\nTo: {rcpt}\r\nSubject: status\r\n\r\nHello.\r\n");
    let r = c.send("app@example.com", &[rcpt], msg.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
}

fn status_json(relay: &Relay) -> Value {
    let (code, body) = relay::http_get(relay.metrics, "/status?format=json").expect("/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_in_chromium_shows_the_queue_the_doctor_and_no_script() {
    let dns = DnsServer::start();
    // Only the RSA key is published: the Ed25519 selector's check fails.
    let (rsa_name, rsa_value) = relay::dkim_records().remove(0);
    dns.add_txt_str(&rsa_name, &rsa_value);
    dns.add_txt_str("example.com", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt_str("_dmarc.example.com", "v=DMARC1; p=reject");
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().unwrap());
    let sink = Sink::start(None).await;
    sink.script_rcpt("busy@example.net", &[HOSTILE_REPLY]);
    let relay = Relay::start(&format!(
        "public_addresses: [\"127.0.0.1\"]\ndelivery:\n  mode: mx\n  port: {}\n  retry: [1h]\n\
         dns:\n  nameservers: [\"{}\"]\n  check_interval: 1h\n",
        sink.addr.port(),
        dns.addr()
    ));
    submit(&relay, "busy@example.net").await;
    submit(&relay, "ok@example.net").await;
    sink.wait_for(1, Duration::from_secs(20)).await;

    // The JSON view: the deferral, the counts and the doctor's pass, once they are all in.
    let start = Instant::now();
    let json = loop {
        let j = status_json(&relay);
        let deferred = j["last_hour"]["deferred"] == 1 && j["last_hour"]["delivered"] == 1;
        if deferred && !j["dns"]["checked_at"].is_null() {
            break j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{j:#}\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(json["last_hour"]["accepted"], 2, "{json:#}");
    assert_eq!(json["queue"]["messages"], 1, "{json:#}");
    let queued = &json["queue"]["oldest"][0];
    assert_eq!(queued["sender"], "app@example.com");
    let rcpt = &queued["recipients"][0];
    assert_eq!(rcpt["address"], "busy@example.net");
    assert_eq!(rcpt["state"], "pending");
    assert!(
        rcpt["last_reply"].as_str().unwrap().contains("<script>"),
        "{rcpt}"
    );
    let failing: Vec<&Value> = json["dns"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "FAIL")
        .collect();
    assert!(
        failing
            .iter()
            .any(|r| r["domain"] == "example.com" && r["check"] == "dkim:dev2026e"),
        "{failing:?}"
    );
    assert!(json["signing"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["selector"] == "dev2026r" && s["signing"] == true));
    // Nobody else's address: only the queued message's recipient.
    let text = json.to_string();
    assert!(!text.contains("ok@example.net"), "{text}");

    // The page itself, in a browser, at a phone's width.
    let Some(mut browser) = chromium::Browser::launch() else {
        return;
    };
    let url = format!("http://{}/status", relay.metrics);
    let page = browser.open(&url, 390, true);
    assert_eq!(
        browser.problems(),
        Vec::<String>::new(),
        "console or log problems"
    );
    assert_eq!(
        browser.requests(),
        vec![url.clone()],
        "requests beyond the page"
    );
    assert_eq!(browser.eval(&page, "document.scripts.length"), 0);
    let title = browser.eval(&page, "document.title");
    assert_eq!(title, format!("dkim-relay status: relay.test"));
    let body = browser.eval(&page, "document.body.innerText");
    let body = body.as_str().unwrap();
    assert!(body.contains(HOSTILE_REPLY), "{body}");
    assert!(body.contains("busy@example.net"), "{body}");
    assert!(body.contains("dkim:dev2026e\tFAIL"), "{body}");
    assert!(
        body.contains("Last hour") || body.contains("Since the start"),
        "{body}"
    );
    // Readable on a phone: nothing wider than the screen.
    let fits = browser.eval(
        &page,
        "document.documentElement.scrollWidth <= window.innerWidth",
    );
    assert_eq!(fits, true, "the page scrolls sideways at 390 px");

    // The top of the page (header, counts, queue, the first domain's checks): the picture in
    // docs/operations.md.
    let png = browser.screenshot(&page, Some(1150.0));
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::Path::new(relay::ROOT).join("target/status-page.png");
    let _ = std::fs::write(&out, &png);
}

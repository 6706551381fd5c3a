//! Component tests of the session driven in memory (`tokio::io::duplex`), for what a loopback
//! end-to-end test cannot show: how the session treats a client that is not on loopback.

use super::policy::network_identity;
use super::session::{Conn, Session};
use super::throttle::{AuthThrottle, RateLimiter};
use super::{Peer, Shared};
use crate::config::{ListenerTls, Settings};
use crate::core::Core;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

fn core(dir: &std::path::Path) -> Core {
    let root = env!("CARGO_MANIFEST_DIR");
    let yaml = format!(
        r#"hostname: relay.test
spool_dir: {spool}
listeners:
  - address: "127.0.0.1:2525"
    tls: none
clients:
  - user: app
    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$hSJuQlGz8CKlJ+dWRClxAA$B8kFxHpxIFwmCj3EWDscq2zFaAi3Ks4L/XbKDvvAmTc"
    allow_from: ["example.com"]
  - network: 192.0.2.0/24
    allow_from: ["example.com", "example.org"]
dkim:
  domains:
    example.com:
      - selector: dev2026e
        private_key: {root}/config/dev-keys/example.com.dev2026e.pem
delivery:
  mode: directory
  directory: {spool}/outbox
dns:
  nameservers: ["127.0.0.1:9"]
  check_interval: 0s
"#,
        spool = dir.display()
    );
    let settings = Settings::parse(&dir.join("config.yaml"), &yaml).expect("config");
    Core::from_settings(settings).expect("core")
}

fn shared(dir: &std::path::Path) -> Shared {
    let (queued, _) = tokio::sync::mpsc::unbounded_channel();
    Shared {
        spool: crate::spool::Spool::open(dir).expect("spool"),
        auth_throttle: AuthThrottle::default(),
        rate_limiter: RateLimiter::default(),
        queued,
        metrics: Arc::new(crate::metrics::Metrics::new()),
        hash_pool: super::hash_pool::HashPool::new(1, prometheus::IntGauge::new("w", "w").unwrap()),
        buffer_budget: super::budget::BufferBudget::new(
            1 << 20,
            4,
            prometheus::IntGauge::new("b", "b").unwrap(),
        ),
        cluster: None,
    }
}

/// Send `lines` one at a time, each answered before the next; returns each reply's last line.
async fn converse(client: DuplexStream, lines: &[&str]) -> Vec<String> {
    let mut r = BufReader::new(client);
    let mut replies = Vec::new();
    for line in lines {
        r.get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("write");
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                replies.push(format!("{all}<closed>"));
                return replies;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        replies.push(all);
    }
    replies
}

/// Run a plain-text session for a client at `ip` over an in-memory pipe.
async fn session_at(ip: &str, lines: &[&str]) -> Vec<String> {
    session_with_metrics(ip, lines).await.0
}

/// [`session_at`], and the process's metrics afterwards.
async fn session_with_metrics(
    ip: &str,
    lines: &[&str],
) -> (Vec<String>, Arc<crate::metrics::Metrics>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = core(dir.path());
    let shared = shared(dir.path());
    let ip: IpAddr = ip.parse().expect("ip");
    let identity = network_identity(&core.settings.clients, ip);
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let mut session = Session::new(
        &core,
        &shared,
        Peer {
            ip: Some(ip),
            uid: None,
        },
        ListenerTls::None,
        identity,
        shutdown,
    );
    let (server, client) = tokio::io::duplex(64 * 1024);
    let (_, replies) = tokio::join!(session.run(Conn::new(server)), converse(client, lines));
    (replies, shared.metrics.clone())
}

const AUTH: &str = "AUTH PLAIN AGFwcABkZW1vLXBhc3N3b3Jk";

#[tokio::test]
async fn auth_is_not_offered_or_accepted_in_clear_text_off_loopback() {
    let replies = session_at(
        "203.0.113.9",
        &["EHLO c.test", AUTH, "MAIL FROM:<app@example.com>"],
    )
    .await;
    assert!(!replies[0].contains("AUTH"), "{}", replies[0]);
    assert!(replies[1].starts_with("538 5.7.11 "), "{}", replies[1]);
    assert!(replies[2].starts_with("530 5.7.0 "), "{}", replies[2]);
    // The same password over IPv6 or IPv4-mapped non-loopback addresses: the same.
    for ip in ["2001:db8::1", "::ffff:203.0.113.9"] {
        let replies = session_at(ip, &["EHLO c.test", AUTH]).await;
        assert!(!replies[0].contains("AUTH"), "{ip}: {}", replies[0]);
        assert!(
            replies[1].starts_with("538 5.7.11 "),
            "{ip}: {}",
            replies[1]
        );
    }
}

#[tokio::test]
async fn auth_is_offered_and_works_on_loopback() {
    for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
        let replies = session_at(ip, &["EHLO c.test", AUTH]).await;
        assert!(
            replies[0].contains("AUTH PLAIN LOGIN"),
            "{ip}: {}",
            replies[0]
        );
        assert!(replies[1].starts_with("235 2.7.0 "), "{ip}: {}", replies[1]);
    }
}

#[tokio::test]
async fn a_trusted_network_needs_no_auth_and_others_do() {
    let ok = session_at("192.0.2.7", &["EHLO c.test", "MAIL FROM:<app@example.com>"]).await;
    assert!(ok[1].starts_with("250 2.1.0"), "{}", ok[1]);
    let no = session_at("192.0.3.7", &["EHLO c.test", "MAIL FROM:<app@example.com>"]).await;
    assert!(no[1].starts_with("530 5.7.0"), "{}", no[1]);
}

#[tokio::test]
async fn each_refused_message_is_counted_under_its_own_reason() {
    // Each message is the text after DATA, ending with the line "." (converse adds the CRLF).
    let message = |header: &str| format!("{header}\r\nSubject: t\r\n\r\nbody\r\n.");
    let cases = [
        (
            "From: a@example.org",
            "550 5.7.1 No DKIM key",
            "no_signing_key",
        ),
        (
            "From: a@elsewhere.test",
            "550 5.7.1 From <",
            "sender_not_allowed",
        ),
        (
            "From: a@example.com\r\nFrom: b@example.com",
            "554 5.6.0 ",
            "header_policy",
        ),
    ];
    for (header, reply, reason) in cases {
        let data = message(header);
        let (replies, metrics) = session_with_metrics(
            "192.0.2.7",
            &[
                "EHLO c.test",
                "MAIL FROM:<app@example.com>",
                "RCPT TO:<x@example.net>",
                "DATA",
                &data,
            ],
        )
        .await;
        assert!(replies[4].starts_with(reply), "{header}: {}", replies[4]);
        let exposition = metrics.render();
        let counted: Vec<&str> = exposition
            .lines()
            .filter(|l| l.starts_with("dkim_relay_messages_rejected_total{") && !l.ends_with(" 0"))
            .collect();
        assert_eq!(
            counted,
            [format!(
                "dkim_relay_messages_rejected_total{{reason=\"{reason}\"}} 1"
            )],
            "{header}"
        );
    }
}

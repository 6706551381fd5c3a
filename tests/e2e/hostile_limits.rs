//! Every session and message limit against the real binary over loopback TCP, each with its
//! exact reply: SIZE at MAIL and while streaming (552 5.3.4, the rest drained, the session
//! usable), recipients (452 4.5.3), header section size and header line length (554 5.6.0),
//! command line length (500 5.5.2), connections overall and per address (421 4.7.0 at
//! connect), idle time (421 4.4.2 then close), the session deadline (421 4.7.0, also against a
//! client trickling bytes), commands per session and failed commands (421 4.7.0), and the
//! per-client message rate (451 4.7.1).

use crate::hostile_kit;
use crate::relay;
use crate::smtp_client;

use hostile_kit::{authed, client_from, outbox_files, start_outbox};
use smtp_client::Client;
use std::time::{Duration, Instant};

const SMALL: &[u8] = b"From: app@example.com\r\nSubject: small\r\n\r\nfits\r\n";

fn assert_reply(r: &smtp_client::Reply, code: u16, status: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert!(r.text.starts_with(status), "want {status}: {r:?}");
}

/// Read one reply within `limit` (a reply that never comes is a failure, not a hang).
async fn reply_within(c: &mut Client, limit: Duration) -> smtp_client::Reply {
    tokio::time::timeout(limit, c.read_reply())
        .await
        .expect("reply in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn message_size_is_enforced_at_mail_and_while_streaming() {
    let relay = start_outbox("  max_message_size: 10KiB\n", "");
    let mut c = authed(relay.plain).await;
    let ehlo = c.cmd("EHLO again.test").await;
    assert!(ehlo.text.contains("SIZE 10240"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<app@example.com> SIZE=20000").await;
    assert_reply(&r, 552, "5.3.4");
    // A declared size within the limit, then more data than declared: counted as it streams.
    assert_eq!(
        c.cmd("MAIL FROM:<app@example.com> SIZE=5000").await.code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    let mut big = b"From: app@example.com\r\nSubject: big\r\n\r\n".to_vec();
    for _ in 0..400 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123\r\n",
        );
    }
    // The smuggled-looking line inside is drained with the rest, never run as a command.
    big.extend_from_slice(b"RSET\r\n");
    let r = c.data(&big).await;
    assert_reply(&r, 552, "5.3.4");
    // The rest was drained: the session is in step and usable.
    assert_eq!(c.cmd("NOOP").await.code, 250);
    let r = c.send("app@example.com", &["a@example.net"], SMALL).await;
    assert_reply(&r, 250, "2.0.0");
    let files = outbox_files(&relay, 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_files(&relay, 0, Duration::ZERO).await.len(),
        1,
        "{files:?}"
    );
    assert!(relay.log().contains("reason") || relay.log().contains("552"));
}

#[tokio::test(flavor = "multi_thread")]
async fn recipients_header_size_and_line_limits() {
    let relay = start_outbox("  max_recipients: 3\n  max_header_size: 4KiB\n", "");
    let mut c = authed(relay.plain).await;
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    for i in 0..3 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<r{i}@example.net>")).await.code,
            250
        );
    }
    let r = c.cmd("RCPT TO:<r3@example.net>").await;
    assert_reply(&r, 452, "4.5.3");
    // The transaction goes on with the three it has.
    assert_reply(&c.data(SMALL).await, 250, "2.0.0");

    // Header section over max_header_size (fields each fine on their own).
    let mut headers = b"From: app@example.com\r\n".to_vec();
    for i in 0..100 {
        headers.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "h".repeat(60)).as_bytes());
    }
    headers.extend_from_slice(b"\r\nbody\r\n");
    let r = c
        .send("app@example.com", &["a@example.net"], &headers)
        .await;
    assert_reply(&r, 554, "5.6.0");
    assert!(r.text.contains("Header section too large"), "{r:?}");

    // Header lines: 998 bytes + CRLF is the limit.
    let line = |n: usize| {
        format!(
            "From: app@example.com\r\nX-Long: {}\r\n\r\nb\r\n",
            "y".repeat(n - 8)
        )
        .into_bytes()
    };
    let r = c
        .send("app@example.com", &["a@example.net"], &line(998))
        .await;
    assert_reply(&r, 250, "2.0.0");
    let r = c
        .send("app@example.com", &["a@example.net"], &line(999))
        .await;
    assert_reply(&r, 554, "5.6.0");
    assert!(r.text.contains("longer than 998"), "{r:?}");

    // Command lines: 998 + CRLF; a longer one is refused whole, its tail never run.
    let ok = format!("NOOP {}", "x".repeat(993));
    assert_eq!(ok.len(), 998);
    assert_eq!(c.cmd(&ok).await.code, 250);
    let long = format!("NOOP {}QUIT", "x".repeat(3000));
    assert_reply(&c.cmd(&long).await, 500, "5.5.2");
    assert_eq!(c.cmd("NOOP").await.code, 250, "still connected and in step");
    assert_eq!(
        outbox_files(&relay, 2, Duration::from_secs(10)).await.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limits_answer_421_at_connect() {
    let relay = start_outbox("  max_connections: 3\n  max_connections_per_ip: 2\n", "");
    // Two from 127.0.0.1 are fine, the third from there is refused.
    let mut a = client_from("127.0.0.1", relay.plain).await;
    assert_eq!(a.read_reply().await.code, 220);
    let mut b = client_from("127.0.0.1", relay.plain).await;
    assert_eq!(b.read_reply().await.code, 220);
    let mut c = client_from("127.0.0.1", relay.plain).await;
    let r = reply_within(&mut c, Duration::from_secs(5)).await;
    assert_reply(&r, 421, "4.7.0");
    assert_eq!(
        reply_within(&mut c, Duration::from_secs(5)).await.code,
        0,
        "closed"
    );
    // Another address still gets in: the third connection overall.
    let mut d = client_from("127.0.0.2", relay.plain).await;
    assert_eq!(d.read_reply().await.code, 220);
    // Now the relay is full for everyone.
    let mut e = client_from("127.0.0.3", relay.plain).await;
    let r = reply_within(&mut e, Duration::from_secs(5)).await;
    assert_reply(&r, 421, "4.7.0");
    // Slots come back when sessions end.
    assert_eq!(a.cmd("QUIT").await.code, 221);
    drop(a);
    let start = Instant::now();
    loop {
        let mut f = client_from("127.0.0.1", relay.plain).await;
        let r = reply_within(&mut f, Duration::from_secs(5)).await;
        if r.code == 220 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slot not released: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((b, d));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_clients_get_421_4_4_2_and_are_disconnected() {
    let relay = start_outbox("  idle_timeout: 1s\n", "");
    // Idle between commands.
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    let start = Instant::now();
    let r = reply_within(&mut c, Duration::from_secs(10)).await;
    assert_reply(&r, 421, "4.4.2");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        reply_within(&mut c, Duration::from_secs(5)).await.code,
        0,
        "closed"
    );
    // Idle in the middle of DATA: the message is dropped, nothing queued.
    let mut c = authed(relay.plain).await;
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.write(b"From: app@example.com\r\n\r\nhalf a mess").await;
    let r = reply_within(&mut c, Duration::from_secs(10)).await;
    assert_reply(&r, 421, "4.4.2");
    assert_eq!(
        reply_within(&mut c, Duration::from_secs(5)).await.code,
        0,
        "closed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.queued(), 0);
    assert!(outbox_files(&relay, 0, Duration::ZERO).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_deadline_holds_against_busy_and_trickling_clients() {
    let relay = start_outbox("  idle_timeout: 10s\n  session_timeout: 2s\n", "");
    // Busy with harmless commands: never idle, still cut off.
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    let start = Instant::now();
    let last = loop {
        let r = c.cmd("NOOP").await;
        if r.code != 250 || start.elapsed() > Duration::from_secs(6) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_reply(&last, 421, "4.7.0");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // Trickling a message one byte at a time never reaches the idle timeout, but the
    // session deadline still ends it.
    let mut c = authed(relay.plain).await;
    let start = Instant::now();
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    let trickle = async {
        for b in b"From: app@example.com\r\n\r\n".iter().cycle().take(100) {
            c.write(std::slice::from_ref(b)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c
    };
    let mut c = trickle.await;
    let r = reply_within(&mut c, Duration::from_secs(5)).await;
    assert_reply(&r, 421, "4.7.0");
    assert!(start.elapsed() < Duration::from_secs(12));
    assert_eq!(relay.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn command_and_error_caps_close_the_session() {
    let relay = start_outbox("  max_commands: 5\n  max_errors: 3\n", "");
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    for _ in 0..4 {
        assert_eq!(c.cmd("NOOP").await.code, 250);
    }
    assert_reply(&c.cmd("NOOP").await, 421, "4.7.0");
    assert_eq!(c.read_reply().await.code, 0, "closed");

    // Unknown and bad commands: the third failure is answered, then 421.
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_reply(&c.cmd("XYZZY").await, 500, "5.5.1");
    assert_reply(&c.cmd("MAIL FROM:<app@example.com>").await, 503, "5.5.1");
    assert_reply(&c.cmd("HELO").await, 501, "5.5.4");
    assert_reply(&c.read_reply().await, 421, "4.7.0");
    assert_eq!(c.read_reply().await.code, 0, "closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn message_rate_per_client_is_limited() {
    let relay = start_outbox("  messages_per_minute_per_client: 2\n", "");
    let mut c = authed(relay.plain).await;
    for _ in 0..2 {
        let r = c.send("app@example.com", &["a@example.net"], SMALL).await;
        assert_reply(&r, 250, "2.0.0");
    }
    let r = c.cmd("MAIL FROM:<app@example.com>").await;
    assert_reply(&r, 451, "4.7.1");
    // Per client: a new connection of the same client is still over, another client is not.
    let mut again = authed(relay.plain).await;
    assert_reply(
        &again.cmd("MAIL FROM:<app@example.com>").await,
        451,
        "4.7.1",
    );
    let mut other = Client::connect(relay.plain).await;
    assert_eq!(other.read_reply().await.code, 220);
    other.cmd("EHLO other.test").await;
    assert_eq!(other.auth_plain("other", relay::PASSWORD).await.code, 235);
    let r = other
        .send(
            "x@other.test",
            &["a@example.net"],
            b"From: x@other.test\r\n\r\nhi\r\n",
        )
        .await;
    assert_reply(&r, 250, "2.0.0");
    assert_eq!(
        outbox_files(&relay, 3, Duration::from_secs(10)).await.len(),
        3
    );
}

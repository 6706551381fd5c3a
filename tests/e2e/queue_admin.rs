//! `mailq` and `dkim-relay queue` against the real daemon while it runs: a message deferred by
//! the receiving server is listed with its last reply and next attempt, `queue retry` makes
//! the running daemon deliver it at once (SIGUSR1 through the pid file in the spool),
//! `queue delete` removes one for good, and with the daemon stopped the spool is still
//! updated and the command says the relay is not running.

use crate::relay;
use crate::sendmail_kit as sendmail;
use crate::smtp_sink;

use relay::Relay;
use sendmail::Front;
use smtp_sink::Sink;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn queue(relay: &Relay, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkim-relay"));
    c.arg("queue").arg("-c").arg(&relay.config).args(args);
    c
}

async fn run(c: Command) -> (Option<i32>, String, String) {
    let o: Output = sendmail::run_async(c, b"").await;
    (o.status.code(), sendmail::stdout(&o), sendmail::stderr(&o))
}

/// `mailq`: the symlink, with the relay's config found through $DKIM_RELAY_CONFIG.
async fn mailq(front: &Front, relay: &Relay) -> String {
    let mut c = Command::new(front.mailq_path());
    c.env("DKIM_RELAY_CONFIG", &relay.config);
    let (code, out, err) = run(c).await;
    assert_eq!(code, Some(0), "mailq: {err}");
    out
}

/// Submit through sendmail; the relay's first attempt is deferred for `rcpt`.
async fn submit_deferred(front: &Front, sink: &Sink, rcpt: &str, subject: &str) {
    sink.script_rcpt(rcpt, &["451 4.3.0 mailbox busy, try later"]);
    let msg = format!("From: app@example.com\nTo: {rcpt}\nSubject: {subject}\n\nhello\n");
    let out = front.sendmail_async(&["-t", "-i"], msg.as_bytes()).await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));
}

/// Wait until `mailq` shows what `want` says (a deferral takes a moment).
async fn mailq_until(front: &Front, relay: &Relay, want: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let out = mailq(front, relay).await;
        if want(&out) {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "mailq never showed it:\n{out}\nrelay log:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The queue id on the line that names `sender`… : the first 18-hex-digit word of each line.
fn ids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 18 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

fn setup(sink: &Sink) -> (Relay, Front) {
    // Deferred messages wait an hour: only `queue retry` can bring them back within the test.
    let relay = Relay::start_with_unix(
        &sendmail::unix_client("[\"example.com\"]"),
        &sendmail::relay_host(sink.addr.port(), "[1h]"),
    );
    let socket = relay.unix.clone().expect("unix listener");
    let front = Front::new(&format!("unix:{}", socket.display()), "");
    (relay, front)
}

#[tokio::test(flavor = "multi_thread")]
async fn mailq_lists_a_deferred_message_and_retry_delivers_it_while_the_daemon_runs() {
    let sink = Sink::start(None).await;
    let (relay, front) = setup(&sink);
    assert_eq!(mailq(&front, &relay).await.trim(), "Mail queue is empty");

    submit_deferred(&front, &sink, "busy@example.net", "first").await;
    let listing = mailq_until(&front, &relay, |o| o.contains("451 4.3.0")).await;
    let found = ids(&listing);
    assert_eq!(found.len(), 1, "{listing}");
    let id = &found[0];
    let line = listing
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap();
    assert!(
        line.ends_with("app@example.com"),
        "sender on the id line: {line}"
    );
    assert!(line.contains(" B "), "size: {line}");
    let rcpt = listing
        .lines()
        .find(|l| l.contains("busy@example.net"))
        .unwrap_or_default();
    assert!(
        rcpt.contains("pending, next in "),
        "next attempt: {listing}"
    );
    assert!(rcpt.contains("1 attempt(s)"), "{listing}");
    assert!(
        rcpt.contains("(451 4.3.0 mailbox busy, try later)"),
        "last outcome: {listing}"
    );
    assert!(
        listing.ends_with("-- 1 message(s) in the queue\n"),
        "{listing}"
    );
    // `sendmail -bp` is mailq too.
    let mut bp = front.command(&front.sendmail_path());
    bp.arg("-bp").env("DKIM_RELAY_CONFIG", &relay.config);
    let (code, out, _) = run(bp).await;
    assert_eq!((code, out.contains(id.as_str())), (Some(0), true), "{out}");

    let (code, out, err) = run(queue(&relay, &["show", id])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("Queue ID:   {id}")), "{out}");
    assert!(out.contains("Sender:     app@example.com"), "{out}");
    assert!(
        out.contains("Signature:  d=example.com s=dev2026r a=rsa-sha256"),
        "{out}"
    );
    assert!(out.contains("  Subject: first"), "header shown: {out}");

    // The sink now takes it; the daemon tries again right away when told.
    assert!(sink.messages().is_empty());
    let (code, out, err) = run(queue(&relay, &["retry", id])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 recipient(s) due now"), "{out}");
    assert!(
        out.contains("is retrying now"),
        "the running daemon was told: {out}"
    );
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "delivered after retry:\n{}", relay.log());
    assert_eq!(got[0].recipients, vec!["busy@example.net"]);
    mailq_until(&front, &relay, |o| o.trim() == "Mail queue is empty").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_a_message_for_good_and_retry_all_works_without_the_daemon() {
    let sink = Sink::start(None).await;
    let (mut relay, front) = setup(&sink);
    submit_deferred(&front, &sink, "gone@example.net", "to delete").await;
    submit_deferred(&front, &sink, "later@example.net", "to keep").await;
    let listing = mailq_until(&front, &relay, |o| o.matches("451 4.3.0").count() == 2).await;
    let found = ids(&listing);
    assert_eq!(found.len(), 2, "{listing}");
    // Oldest first: the first submitted is the one to delete.
    let (doomed, kept) = (&found[0], &found[1]);

    let (code, out, err) = run(queue(&relay, &["delete", doomed])).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), format!("{doomed}: deleted"));
    let (code, _, err) = run(queue(&relay, &["show", doomed])).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no such message"), "{err}");
    let listing = mailq(&front, &relay).await;
    assert_eq!(ids(&listing), vec![kept.clone()], "{listing}");

    // With the daemon stopped, retry --all still makes the rest due and says so.
    relay.kill9();
    let (code, out, err) = run(queue(&relay, &["retry", "--all"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 message(s) due now"), "{out}");
    assert!(out.contains("the relay is not running"), "{out}");
    let listing = mailq(&front, &relay).await;
    assert!(listing.contains("pending, due now"), "{listing}");

    // Started again, it delivers the kept message and never the deleted one.
    relay.spawn();
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_now = sink.messages();
    assert_eq!(got.len(), 1, "{}", relay.log());
    assert_eq!(got_now.len(), 1, "the deleted message stays deleted");
    assert_eq!(got_now[0].recipients, vec!["later@example.net"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ids_are_refused_without_touching_the_spool() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    for args in [
        &["show", "../../etc/passwd"][..],
        &["delete", "abc"][..],
        &["retry", "0123456789abcdef01"][..],
    ] {
        let (code, _, err) = run(queue(&relay, args)).await;
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("is not a queue id"), "{err}");
    }
    let (code, _, err) = run(queue(&relay, &["retry", "0123456789ABCDEF01"])).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no such message in the queue"), "{err}");
    // A config whose spool was never made is not created behind the daemon's back.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let text = std::fs::read_to_string(&relay.config).unwrap().replace(
        &relay.spool().display().to_string(),
        &dir.path().join("nospool").display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkim-relay"));
    c.args(["queue", "-c"]).arg(&config).arg("list");
    let (code, _, err) = run(c).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no spool at"), "{err}");
    assert!(!dir.path().join("nospool").exists());
}

//! AUTH abuse against the real binary: failures are slowed per source address from the 4th on
//! (1 s, then 2 s, …, served before the next password check), the count spans connections, a connection's 10th failure gets
//! 421 4.7.0 and is closed, and an unknown user looks exactly like a wrong password (same
//! reply, same cost: the password hash always runs). Each test uses its own loopback source
//! address, so their counters do not mix.

use crate::hostile_kit;
use crate::relay;
use crate::smtp_client;

use hostile_kit::{client_from, start_outbox};
use smtp_client::{Client, Reply};
use std::time::{Duration, Instant};

async fn greeted_from(src: &str, relay: &relay::Relay) -> Client {
    let mut c = client_from(src, relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    c
}

/// One failed AUTH: its reply and how long it took.
async fn fail_once(c: &mut Client, user: &str) -> (Reply, Duration) {
    let start = Instant::now();
    let r = c.auth_plain(user, "not-the-password").await;
    (r, start.elapsed())
}

fn assert_535(r: &Reply) {
    assert_eq!(r.code, 535, "{r:?}");
    assert_eq!(r.text, "5.7.8 Authentication credentials invalid", "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_slowed_per_address_across_connections() {
    let relay = start_outbox("", "");
    let mut c = greeted_from("127.0.0.21", &relay).await;
    for _ in 0..3 {
        let (r, took) = fail_once(&mut c, "app").await;
        assert_535(&r);
        assert!(took < Duration::from_millis(900), "no delay yet: {took:?}");
    }
    // A new connection does not reset the count: the 4th failure waits 1 s, the 5th 2 s.
    drop(c);
    let mut c = greeted_from("127.0.0.21", &relay).await;
    let (r, took) = fail_once(&mut c, "app").await;
    assert_535(&r);
    assert!(took >= Duration::from_secs(1), "4th: {took:?}");
    let (r, took) = fail_once(&mut c, "nobody").await;
    assert_535(&r);
    assert!(took >= Duration::from_secs(2), "5th: {took:?}");
    // Another address is not slowed by this one's failures.
    let mut other = greeted_from("127.0.0.22", &relay).await;
    let (r, took) = fail_once(&mut other, "app").await;
    assert_535(&r);
    assert!(took < Duration::from_millis(900), "{took:?}");
    // The right password still works after failures; the address's delay (3 s after its 5th
    // failure) is served before any check starts, so it applies to this attempt too: the relay
    // cannot know a password is right before it has spent the hash on it.
    let start = Instant::now();
    let r = c.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "delayed before the check: {took:?}"
    );
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenth_failure_of_a_connection_gets_421_and_close() {
    // The delays add up to 1+2+3+4+5+5+5 s: this is the slowest test here, by design.
    let relay = start_outbox("", "");
    let mut c = greeted_from("127.0.0.23", &relay).await;
    for i in 1..10 {
        let (r, _) = fail_once(&mut c, if i % 2 == 0 { "app" } else { "nobody" }).await;
        assert_535(&r);
    }
    let (r, took) = fail_once(&mut c, "app").await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text.starts_with("4.7.0"), "{r:?}");
    assert!(took >= Duration::from_secs(5), "still delayed: {took:?}");
    assert_eq!(c.read_reply().await.code, 0, "closed after 421");
    assert_eq!(relay.queued(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_look_the_same() {
    let relay = start_outbox("", "");
    // Three of each (under the delay threshold, each from its own address), fastest kept:
    // scheduling noise only ever adds time.
    let mut fastest = Vec::new();
    for (src, user) in [("127.0.0.24", "app"), ("127.0.0.25", "no-such-user")] {
        let mut c = greeted_from(src, &relay).await;
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (r, took) = fail_once(&mut c, user).await;
            assert_535(&r);
            best = best.min(took);
        }
        fastest.push(best);
    }
    let (known, unknown) = (fastest[0], fastest[1]);
    // Without the dummy hash an unknown user would be answered in well under a millisecond,
    // against tens of milliseconds for argon2id.
    assert!(
        unknown * 2 >= known && known * 2 >= unknown,
        "known user {known:?} vs unknown user {unknown:?}"
    );
    // AUTH LOGIN too: same reply for both.
    for (src, user) in [("127.0.0.26", "app"), ("127.0.0.27", "no-such-user")] {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut c = greeted_from(src, &relay).await;
        assert_eq!(c.cmd("AUTH LOGIN").await.code, 334);
        assert_eq!(c.cmd(&b64(user)).await.code, 334);
        assert_535(&c.cmd(&b64("wrong")).await);
    }
}

//! Memory under hostile load, against the real binary: a flood of AUTH attempts with wrong
//! passwords from several addresses runs at most `auth_hash_concurrency` password checks at
//! once (peak RSS stays under 64 MiB + that many argon2 memory costs), every attempt gets 535
//! or 454, and a legitimate client on another address authenticates and delivers meanwhile;
//! 300 sessions each holding an unfinished 1 MiB header section stay within
//! `limits.buffer_memory` (+ 64 MiB), those over it get 451 4.3.2, and ordinary mail still
//! goes through. Peak RSS is the kernel's VmHWM of the relay process.

use crate::eventually::eventually;
use crate::hostile_kit;
use crate::relay;

use hostile_kit::{client_from, outbox_files, start_outbox, start_outbox_edited};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// The relay's peak resident memory (VmHWM), in bytes.
fn peak_rss(relay: &relay::Relay) -> u64 {
    let pid = relay.pid().expect("relay running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

const GOOD: &[u8] =
    b"From: app@example.com\r\nTo: a@example.net\r\nSubject: still served\r\n\r\nbody\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn auth_flood_is_bounded_and_a_real_client_gets_through() {
    // The test user's hash is argon2id m=19456 (19 MiB), as `hash-password` writes it.
    const CONCURRENCY: u64 = 2;
    const HASH_MEMORY: u64 = 19456 * 1024;
    let relay = start_outbox(
        &format!("  auth_hash_concurrency: {CONCURRENCY}\n  max_connections: 400\n  max_connections_per_ip: 100\n"),
        "",
    );
    let addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let mut attackers = Vec::new();
    for i in 0..200 {
        let src = addresses[i % addresses.len()];
        let to = relay.plain;
        attackers.push(tokio::spawn(async move {
            let mut c = client_from(src, to).await;
            assert_eq!(c.read_reply().await.code, 220);
            assert_eq!(c.cmd("EHLO flood.test").await.code, 250);
            let user = if i % 2 == 0 { "app" } else { "no-such-user" };
            c.auth_plain(user, "wrong-password").await
        }));
    }
    // Once the flood queues, a legitimate client on its own address logs in and sends.
    assert!(
        eventually(Duration::from_secs(20), || relay
            .metric("dkim_relay_auth_hash_waiting")
            >= 4.0)
        .await,
        "the flood never queued"
    );
    let start = Instant::now();
    let mut c = client_from("127.0.0.9", relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO app.test").await.code, 250);
    let r = c.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    let auth_took = start.elapsed();
    let r = c.send("app@example.com", &["a@example.net"], GOOD).await;
    assert_eq!(r.code, 250, "{r:?}");
    // Its check waits behind at most one attempt per flooding address, never behind the flood.
    assert!(
        auth_took < Duration::from_secs(5),
        "legitimate AUTH took {auth_took:?}"
    );

    let (mut refused, mut busy) = (0, 0);
    for a in attackers {
        let r = a.await.expect("attacker task");
        match r.code {
            535 => refused += 1,
            454 => {
                assert_eq!(r.text, "4.7.0 Temporary authentication failure", "{r:?}");
                busy += 1
            }
            _ => panic!("unexpected reply to a wrong password: {r:?}"),
        }
    }
    assert_eq!(refused + busy, 200);
    assert!(
        refused >= 3 * addresses.len(),
        "{refused} x 535, {busy} x 454"
    );
    assert!(
        busy > 0,
        "the wait for a slot must be bounded: {refused} x 535"
    );
    assert_eq!(
        outbox_files(&relay, 1, Duration::from_secs(10)).await.len(),
        1
    );

    let peak = peak_rss(&relay);
    let bound = 64 * MIB + CONCURRENCY * HASH_MEMORY;
    assert!(
        peak < bound,
        "peak RSS {} MiB >= {} MiB",
        peak / MIB,
        bound / MIB
    );
    assert!(
        relay.metric("dkim_relay_overload_refusals_total{reason=\"auth_hash_busy\"}")
            >= busy as f64
    );
    assert_eq!(relay.metric("dkim_relay_auth_hash_waiting"), 0.0);
}

/// A header section of just under 1 MiB, no blank line after it, and no From (so a session
/// that does get it buffered is refused at the end without anything being spooled).
fn big_header() -> Vec<u8> {
    let line = format!("X-Pad: {}\r\n", "p".repeat(1024 - 10));
    line.repeat(1000).into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn header_flood_stays_within_buffer_memory() {
    const BUDGET: u64 = 64 * MIB;
    const SESSIONS: usize = 300;
    let relay = start_outbox_edited(
        "  buffer_memory: 64MiB\n  max_header_size: 2MiB\n  max_connections: 400\n  max_connections_per_ip: 100\n",
        "",
        |yaml, _| {
            yaml.replace(
                "clients:\n",
                "clients:\n  - network: 127.0.0.0/8\n    allow_from: [\"example.com\"]\n",
            )
        },
    );
    let addresses = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
    let header = std::sync::Arc::new(big_header());
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (src, to, header) = (addresses[i % addresses.len()], relay.plain, header.clone());
        let (held_tx, mut go) = (held_tx.clone(), go_tx.subscribe());
        sessions.push(tokio::spawn(async move {
            let mut c = client_from(src, to).await;
            assert_eq!(c.read_reply().await.code, 220);
            assert_eq!(c.cmd("EHLO flood.test").await.code, 250);
            assert_eq!(c.cmd("MAIL FROM:<x@example.com>").await.code, 250);
            assert_eq!(c.cmd("RCPT TO:<y@example.net>").await.code, 250);
            assert_eq!(c.cmd("DATA").await.code, 354);
            c.write(&header).await;
            let _ = held_tx.send(());
            // Hold the unfinished header section until the test has looked.
            let _ = go.recv().await;
            c.write(b".\r\n").await;
            c.read_reply().await
        }));
    }
    drop(held_tx);
    for _ in 0..SESSIONS {
        held_rx
            .recv()
            .await
            .expect("a session died before sending its header");
    }
    // Everything sent has been read by the relay once its refusals stop moving and what is
    // held is what the budget allows.
    let refused = "dkim_relay_overload_refusals_total{reason=\"buffer_memory\"}";
    let mut last = -1.0;
    eventually(Duration::from_secs(30), || {
        let now = relay.metric(refused);
        let settled = now == last && now > 0.0;
        last = now;
        settled
    })
    .await;
    let held = relay.metric("dkim_relay_buffer_memory_bytes");
    assert!(held > 0.0 && held <= BUDGET as f64, "held {held}");

    // Meanwhile an ordinary message goes through.
    let mut c = client_from("127.0.0.1", relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO app.test").await.code, 250);
    let r = c.send("app@example.com", &["a@example.net"], GOOD).await;
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(
        outbox_files(&relay, 1, Duration::from_secs(10)).await.len(),
        1
    );

    let peak = peak_rss(&relay);
    assert!(
        peak < BUDGET + 64 * MIB,
        "peak RSS {} MiB with a {} MiB budget",
        peak / MIB,
        BUDGET / MIB
    );

    // Each session ends its data: those refused for memory get 451 4.3.2; those whose header
    // section was held get the header-policy refusal (it has no From).
    let _ = go_tx.send(());
    let (mut over_budget, mut held_whole) = (0, 0);
    for s in sessions {
        let r = s.await.expect("session task");
        match (r.code, r.text.get(..5)) {
            (451, Some("4.3.2")) => over_budget += 1,
            (554, Some("5.6.0")) => held_whole += 1,
            _ => panic!("unexpected reply: {r:?}"),
        }
    }
    // 64 MiB with 400 connection floors of 64 KiB leaves 39 MiB to share: about 40 sessions.
    assert!(
        (20..=64).contains(&held_whole),
        "{held_whole} held, {over_budget} refused"
    );
    assert_eq!(over_budget + held_whole, SESSIONS);
    assert!(relay.metric(refused) >= over_budget as f64);
    assert!(
        eventually(Duration::from_secs(10), || relay
            .metric("dkim_relay_buffer_memory_bytes")
            == 0.0)
        .await,
        "memory given back"
    );
}

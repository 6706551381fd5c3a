//! Several replicas, one set of limits: two real relay processes with the same `cluster.redis`
//! and a real redis-server on loopback. A client's rate limit is reached after exactly the
//! configured count summed over both; AUTH failures spread over both get the delays at the
//! same counts as on one, and a connection's 10th failure still gets 421; killing
//! redis-server switches to per-process counting (or 451/454 under `defer`) at once, and
//! restarting it resumes shared counting; every 250 is one message delivered, once.

use crate::hostile_kit;
use crate::redis_server;
use crate::relay;
use crate::smtp_client;

use hostile_kit::{client_from, outbox_files, start_outbox_edited};
use redis_server::RedisServer;
use relay::Relay;
use smtp_client::{Client, Reply};
use std::time::{Duration, Instant};

const PER_MINUTE: usize = 6;

/// Two relays with the same cluster settings; users app, other, third (same password).
fn replicas(redis: &RedisServer, on_down: &str) -> (Relay, Relay) {
    let start = || {
        start_outbox_edited(
            &format!("  messages_per_minute_per_client: {PER_MINUTE}\n"),
            // A generous budget: the machine running the tests is busy, and a decision that
            // misses it would be counted per process (this test wants exact shared counts).
            &format!(
                "cluster:\n  redis: {}\n  on_redis_down: {on_down}\n  timeout: 1s\n",
                redis.url()
            ),
            |yaml, _| {
                yaml.replace(
                    "clients:\n",
                    &format!(
                        "clients:\n  - user: third\n    password_hash: \"{}\"\n    allow_from: [\"example.com\"]\n",
                        relay::PASSWORD_HASH
                    ),
                )
            },
        )
    };
    (start(), start())
}

/// Poll until both relays report Redis `up` (1) or not (0); how long it took.
async fn redis_up_on_both(a: &Relay, b: &Relay, up: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    let want = if up { 1.0 } else { 0.0 };
    while start.elapsed() < limit {
        if a.metric("dkim_relay_cluster_redis_up") == want
            && b.metric("dkim_relay_cluster_redis_up") == want
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis_up did not become {want} on both relays within {limit:?}");
}

async fn login(relay: &Relay, src: &str, user: &str) -> Client {
    let mut c = client_from(src, relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    let r = c.auth_plain(user, relay::PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    c
}

/// One message numbered `seq` from `user`'s allowed domain; the final reply.
async fn send(c: &mut Client, user: &str, seq: usize) -> Reply {
    let from = if user == "other" {
        "other@other.test".to_string()
    } else {
        format!("{user}@example.com")
    };
    let msg = format!("From: {from}\r\nTo: rcpt@example.net\r\nSubject: seq {seq}\r\nX-Seq: {seq}\r\n\r\nmessage {seq}\r\n");
    c.send(&from, &["rcpt@example.net"], msg.as_bytes()).await
}

/// Every `X-Seq` delivered by either relay, waiting for `n`.
async fn delivered(a: &Relay, b: &Relay, n: usize) -> Vec<usize> {
    let start = Instant::now();
    loop {
        let mut seqs: Vec<usize> = Vec::new();
        for r in [a, b] {
            for m in outbox_files(r, 0, Duration::ZERO).await {
                let text = String::from_utf8_lossy(&m).to_string();
                if let Some(v) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Seq: "))
                    .and_then(|v| v.trim().parse().ok())
                {
                    seqs.push(v);
                }
            }
        }
        if seqs.len() >= n || start.elapsed() > Duration::from_secs(20) {
            seqs.sort_unstable();
            return seqs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_is_shared_then_local_while_redis_is_down_then_shared_again() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start(relay::free_port());
    let (r1, r2) = replicas(&redis, "local");
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    let mut accepted = Vec::new();
    let mut seq = 0;

    // Shared: the limit is reached after exactly PER_MINUTE messages over both replicas.
    let mut c = [
        login(&r1, "127.0.0.61", "app").await,
        login(&r2, "127.0.0.61", "app").await,
    ];
    for i in 0..PER_MINUTE + 2 {
        seq += 1;
        let r = send(&mut c[i % 2], "app", seq).await;
        if i < PER_MINUTE {
            assert_eq!(r.code, 250, "message {} of {PER_MINUTE}: {r:?}", i + 1);
            accepted.push(seq);
        } else {
            assert_eq!((r.code, r.text.get(..5)), (451, Some("4.7.1")), "{r:?}");
            assert_eq!(c[i % 2].cmd("RSET").await.code, 250);
        }
    }

    // Redis dies: the next decision falls back at once, and both relays say so within 1 s.
    let mut c = [
        login(&r1, "127.0.0.62", "other").await,
        login(&r2, "127.0.0.62", "other").await,
    ];
    redis.kill();
    let killed = Instant::now();
    seq += 1;
    let r = send(&mut c[0], "other", seq).await;
    assert_eq!(r.code, 250, "{r:?}");
    accepted.push(seq);
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    redis_up_on_both(&r1, &r2, false, Duration::from_secs(1)).await;
    // Per-process counting: each replica allows PER_MINUTE on its own.
    for (k, conn) in c.iter_mut().enumerate() {
        let already = if k == 0 { 1 } else { 0 };
        for i in already..PER_MINUTE + 1 {
            seq += 1;
            let r = send(conn, "other", seq).await;
            if i < PER_MINUTE {
                assert_eq!(r.code, 250, "replica {k}, message {}: {r:?}", i + 1);
                accepted.push(seq);
            } else {
                assert_eq!(r.code, 451, "replica {k}: {r:?}");
                assert_eq!(conn.cmd("RSET").await.code, 250);
            }
        }
    }

    // Redis is back (empty): shared counting resumes.
    redis.spawn();
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    let mut c = [
        login(&r1, "127.0.0.63", "third").await,
        login(&r2, "127.0.0.63", "third").await,
    ];
    for i in 0..PER_MINUTE + 1 {
        seq += 1;
        let r = send(&mut c[(i + 1) % 2], "third", seq).await;
        if i < PER_MINUTE {
            assert_eq!(r.code, 250, "message {} after the restart: {r:?}", i + 1);
            accepted.push(seq);
        } else {
            assert_eq!(r.code, 451, "{r:?}");
        }
    }

    // Nothing lost, nothing twice: exactly the accepted messages, each once.
    assert_eq!(accepted.len(), 3 * PER_MINUTE + PER_MINUTE);
    assert_eq!(delivered(&r1, &r2, accepted.len()).await, accepted);
    assert!(
        r1.metric("dkim_relay_cluster_decisions_total{limit=\"message_rate\",outcome=\"refused\"}")
            >= 1.0
    );
    assert!(
        r1.metric(
            "dkim_relay_cluster_decisions_total{limit=\"message_rate\",outcome=\"unavailable\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn defer_answers_451_and_454_while_redis_is_down() {
    if !redis_server::available() {
        return;
    }
    let mut redis = RedisServer::start(relay::free_port());
    let (r1, r2) = replicas(&redis, "defer");
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    let mut a = login(&r1, "127.0.0.64", "app").await;
    assert_eq!(send(&mut a, "app", 1).await.code, 250);

    redis.kill();
    let killed = Instant::now();
    let r = a.cmd("MAIL FROM:<app@example.com>").await;
    assert_eq!((r.code, r.text.get(..5)), (451, Some("4.7.1")), "{r:?}");
    let mut b = client_from("127.0.0.64", r2.plain).await;
    assert_eq!(b.read_reply().await.code, 220);
    assert_eq!(b.cmd("EHLO client.test").await.code, 250);
    let r = b.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(
        (r.code, r.text.as_str()),
        (454, "4.7.0 Temporary authentication failure")
    );
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );

    redis.spawn();
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    assert_eq!(send(&mut a, "app", 2).await.code, 250);
    assert_eq!(b.auth_plain("app", relay::PASSWORD).await.code, 235);
    assert_eq!(send(&mut b, "app", 3).await.code, 250);
    assert_eq!(delivered(&r1, &r2, 3).await, vec![1, 2, 3]);
}

async fn fail(c: &mut Client) -> (Reply, Duration) {
    let start = Instant::now();
    let r = c.auth_plain("app", "wrong-password").await;
    (r, start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_failures_count_across_replicas_and_421_stays_per_connection() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start(relay::free_port());
    let (r1, r2) = replicas(&redis, "local");
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    let greet = |relay: &Relay, src: &'static str| {
        let to = relay.plain;
        async move {
            let mut c = client_from(src, to).await;
            assert_eq!(c.read_reply().await.code, 220);
            assert_eq!(c.cmd("EHLO client.test").await.code, 250);
            c
        }
    };

    // The 421 at a connection's 10th failure, while the address also fails on the other
    // replica: slow by design (the delays add up), so it runs alongside the rest.
    let mut a = greet(&r1, "127.0.0.72").await;
    let mut b = greet(&r2, "127.0.0.72").await;
    let tenth = tokio::spawn(async move {
        let (r, _) = fail(&mut b).await;
        assert_eq!(r.code, 535, "{r:?}");
        for i in 1..10 {
            let (r, _) = fail(&mut a).await;
            assert_eq!(r.code, 535, "failure {i} of the connection: {r:?}");
        }
        let (r, took) = fail(&mut a).await;
        assert_eq!((r.code, r.text.get(..5)), (421, Some("4.7.0")), "{r:?}");
        // The address's 11th failure over both replicas: the longest delay.
        assert!(took >= Duration::from_secs(5), "{took:?}");
    });

    // Delays follow the address's count over both replicas: none for three, then 1 s, 2 s.
    let mut c = [
        greet(&r1, "127.0.0.71").await,
        greet(&r2, "127.0.0.71").await,
    ];
    for i in 0..3 {
        let (r, took) = fail(&mut c[i % 2]).await;
        assert_eq!(r.code, 535, "{r:?}");
        assert!(
            took < Duration::from_millis(900),
            "failure {}: {took:?}",
            i + 1
        );
    }
    let (r, took) = fail(&mut c[1]).await;
    assert_eq!(r.code, 535, "{r:?}");
    assert!(
        took >= Duration::from_secs(1),
        "4th over both replicas: {took:?}"
    );
    let (r, took) = fail(&mut c[0]).await;
    assert_eq!(r.code, 535, "{r:?}");
    assert!(
        took >= Duration::from_secs(2),
        "5th over both replicas: {took:?}"
    );

    tenth.await.expect("the connection's 10th failure");
    assert!(
        r2.metric(
            "dkim_relay_cluster_decisions_total{limit=\"auth_failures\",outcome=\"allowed\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_address_are_counted_across_replicas() {
    if !redis_server::available() {
        return;
    }
    let redis = RedisServer::start(relay::free_port());
    let start = || {
        start_outbox_edited(
            "  max_connections_per_ip: 2\n",
            &format!("cluster:\n  redis: {}\n  timeout: 1s\n", redis.url()),
            |yaml, _| yaml,
        )
    };
    let (r1, r2) = (start(), start());
    redis_up_on_both(&r1, &r2, true, Duration::from_secs(10)).await;
    let greeted = |relay: &Relay| {
        let to = relay.plain;
        async move {
            let mut c = client_from("127.0.0.81", to).await;
            let r = c.read_reply().await;
            (c, r)
        }
    };
    let (_a, r) = greeted(&r1).await;
    assert_eq!(r.code, 220, "{r:?}");
    let (b, r) = greeted(&r2).await;
    assert_eq!(r.code, 220, "{r:?}");
    // The address has its two connections, one on each replica: a third on either is refused.
    for relay in [&r1, &r2] {
        let (_, r) = greeted(relay).await;
        assert_eq!((r.code, r.text.get(..5)), (421, Some("4.7.0")), "{r:?}");
    }
    // One ends: its lease is given back, and the address may connect again.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_c, r) = greeted(&r1).await;
        if r.code == 220 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease was not given back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn check_config_warns_about_an_unreachable_redis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = relay::free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: relay.test\nspool_dir: {spool}\nlisteners:\n  - address: \"127.0.0.1:2525\"\n    tls: none\nclients:\n  - network: 127.0.0.1/32\n    allow_from: [\"example.com\"]\ndkim:\n  domains:\n    example.com:\n      - selector: {sel}\n        private_key: {key}\ncluster:\n  redis: redis://127.0.0.1:{closed}/0\n",
            spool = dir.path().join("spool").display(),
            sel = relay::ED_SELECTOR,
            key = relay::ed_key().display(),
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
        .arg("check-config")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("run check-config");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // A warning, not an error: Redis may well come up after the relay.
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "cluster: limits shared through redis://127.0.0.1:{closed}/0 (on_redis_down: local)"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: cluster.redis redis://127.0.0.1:{closed}/0 is unreachable"
        )),
        "{stderr}"
    );
}

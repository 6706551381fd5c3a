//! A spool whose file system runs short of space, on the real binary: below
//! `limits.spool_min_free` MAIL gets `452 4.3.1` and `/readyz` 503 (so a load balancer sends
//! clients to another replica), and once space is freed both recover by themselves and mail
//! is accepted and delivered again.
//!
//! The spool lives on a small tmpfs the test mounts (it runs as root in CI). Where mounting is
//! not permitted, the real file system stands in: `spool_min_free` is set a margin below its
//! current free space and a file the test removes again takes twice that margin.

use crate::relay;
use crate::smtp_client;

use relay::Relay;
use smtp_client::Client;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A tmpfs mounted for the test, unmounted when dropped (lazily: the relay may still hold it).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size_mib: u64) -> Option<Mount> {
    if std::env::var_os("DKIM_RELAY_TEST_NO_MOUNT").is_some() {
        return None;
    }
    std::fs::create_dir_all(at).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
        .arg("tmpfs")
        .arg(at)
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| Mount(at.to_path_buf()))
}

fn free(dir: &Path) -> u64 {
    dkim_relay::spool::FreeSpace::new(dir)
        .available()
        .expect("statvfs")
}

/// A file of `bytes` really allocated (not sparse): written on tmpfs, fallocated elsewhere.
fn fill(path: &Path, bytes: u64) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::create(path).unwrap();
    // SAFETY: fallocate on a file we own; no memory is involved.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    if rc != 0 {
        let chunk = vec![0u8; MIB as usize];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(MIB);
            f.write_all(&chunk[..n as usize]).unwrap();
            left -= n;
        }
    }
    f.sync_all().unwrap();
}

fn wait_until(what: &str, relay: &Relay, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} never happened\nrelay log:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn session(relay: &Relay) -> Client {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    c
}

/// MAIL's reply (code, text), the transaction reset after.
async fn mail(relay: &Relay, params: &str) -> (u16, String) {
    let mut c = session(relay).await;
    let r = c.cmd(&format!("MAIL FROM:<app@example.com>{params}")).await;
    let _ = c.cmd("QUIT").await;
    (r.code, r.text)
}

#[tokio::test]
async fn a_spool_short_of_space_refuses_mail_and_is_not_ready_until_freed() {
    // Start once to have the config and directories; then put the spool on its own file system.
    let probe = tempfile::tempdir().unwrap();
    let mount = mount_tmpfs(&probe.path().join("fs"), 32);
    let (limits, filler_dir) = match &mount {
        Some(m) => ("limits:\n  spool_min_free: 8MiB\n".to_string(), m.0.clone()),
        None => {
            let f = free(probe.path());
            assert!(
                f > 512 * MIB,
                "too little free space ({f} bytes) to test on the real file system"
            );
            let margin = (f / 4).min(2048 * MIB);
            (
                format!("limits:\n  spool_min_free: {}\n", f - margin),
                probe.path().to_path_buf(),
            )
        }
    };
    let mut relay = Relay::start(&format!(
        "delivery:\n  mode: directory\n  directory: outbox\n{limits}"
    ));
    if let Some(m) = &mount {
        // The spool moves onto the tmpfs: restart on it.
        relay.kill9();
        let text = std::fs::read_to_string(&relay.config).unwrap();
        let spool = relay.spool();
        let text = text.replace(
            &format!("spool_dir: {}", spool.display()),
            &format!("spool_dir: {}", m.0.join("spool").display()),
        );
        std::fs::write(&relay.config, text).unwrap();
        relay.spawn();
    }
    assert_eq!(mail(&relay, "").await.0, 250);

    // Fill the file system to below the minimum.
    let filler = filler_dir.join("filler");
    let min_free = match &mount {
        Some(_) => 8 * MIB,
        None => {
            let cfg = std::fs::read_to_string(&relay.config).unwrap();
            cfg.lines()
                .find_map(|l| l.trim().strip_prefix("spool_min_free: "))
                .unwrap()
                .parse()
                .unwrap()
        }
    };
    let now_free = free(&filler_dir);
    let to_fill = match &mount {
        // Leave 4 MiB: below the 8 MiB minimum, with room for the readiness probe's file.
        Some(_) => now_free - 4 * MIB,
        // As far below the minimum as it was above it when the relay started.
        None => (now_free - min_free) * 2,
    };
    fill(&filler, to_fill);
    assert!(free(&filler_dir) < min_free);

    wait_until("/readyz 503", &relay, || {
        relay::http_get(relay.metrics, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    let (code, body) = relay::http_get(relay.metrics, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("spool_min_free"), "{body}");
    let (code, text) = mail(&relay, "").await;
    assert_eq!(code, 452, "{text}");
    assert!(text.starts_with("4.3.1 "), "{text}");
    assert!(relay
        .log()
        .contains("spool free space below limits.spool_min_free"));

    // Space freed: ready again and taking mail, without a restart.
    std::fs::remove_file(&filler).unwrap();
    wait_until("/readyz 200 again", &relay, || relay.ready());
    let mut c = session(&relay).await;
    let msg = b"From: app@example.com\r\nTo: a@example.net\r\nSubject: after\r\n\r\nHello.\r\n";
    let r = c.send("app@example.com", &["a@example.net"], msg).await;
    assert_eq!(r.code, 250, "{r:?}");
    let start = Instant::now();
    while std::fs::read_dir(relay.outbox()).map_or(0, |d| d.count()) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A declared SIZE that would eat into the minimum is refused up front (tmpfs only: on the
    // real file system it would be over max_message_size).
    if mount.is_some() {
        let size = free(&filler_dir) - min_free + MIB;
        assert!(size < 25 * MIB);
        let (code, text) = mail(&relay, &format!(" SIZE={size}")).await;
        assert_eq!(code, 452, "SIZE={size}: {text}");
        assert_eq!(mail(&relay, " SIZE=1000").await.0, 250);
    }
    assert!(relay.log().contains("spool free space is back above"));
    drop(mount);
}

//! The relay under a service manager (systemd `Type=notify`), with the test in systemd's
//! place: a unix datagram socket as `NOTIFY_SOCKET` and `WATCHDOG_USEC` set. The real binary
//! says `READY=1` once its listeners take connections, pets the watchdog at half the interval,
//! brackets a SIGHUP reload with `RELOADING=1` (+ `MONOTONIC_USEC`) and `READY=1`, and says
//! `STOPPING=1` when SIGTERM starts the drain.

use crate::relay;

use relay::Relay;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next datagram holding `key` (others, e.g. watchdog pets, are skipped), within `limit`.
fn next_with(sock: &UnixDatagram, key: &str, limit: Duration, log: &dyn Fn() -> String) -> String {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "no {key} within {limit:?}\n{}", log());
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg
                .lines()
                .any(|l| l == key || l.starts_with(&format!("{key}=")))
            {
                return msg;
            }
        }
    }
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

#[test]
fn notify_socket_hears_ready_watchdog_reloading_and_stopping() {
    let mut r = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    r.kill9();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let log_path = dir.path().join("relay.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
            .args(["serve", "-c"])
            .arg(&r.config)
            .env("NOTIFY_SOCKET", &path)
            // One second: pets every half second.
            .env("WATCHDOG_USEC", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = d.0.id();

    let ready = next_with(&sock, "READY", Duration::from_secs(30), &log);
    assert!(ready.contains("STATUS=accepting mail"), "{ready}");
    // Ready means the listeners take connections and /readyz agrees, at once.
    std::net::TcpStream::connect(r.plain).expect("SMTP listener after READY=1");
    assert!(r.ready(), "/readyz after READY=1");

    // The watchdog is petted, again and again.
    let start = Instant::now();
    for _ in 0..3 {
        next_with(&sock, "WATCHDOG", Duration::from_secs(10), &log);
    }
    assert!(start.elapsed() < Duration::from_secs(15));

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1.
    kill(pid, "HUP");
    let reloading = next_with(&sock, "RELOADING", Duration::from_secs(30), &log);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let again = next_with(&sock, "READY", Duration::from_secs(30), &log);
    assert!(!again.contains("refused"), "{again}");

    // A reload that is refused still ends in READY=1, and says so.
    let good = std::fs::read_to_string(&r.config).unwrap();
    std::fs::write(&r.config, format!("{good}\nno_such_key: 1\n")).unwrap();
    kill(pid, "HUP");
    next_with(&sock, "RELOADING", Duration::from_secs(30), &log);
    let refused = next_with(&sock, "READY", Duration::from_secs(30), &log);
    assert!(refused.contains("refused"), "{refused}");
    std::fs::write(&r.config, good).unwrap();

    // SIGTERM: STOPPING=1, then a clean exit.
    kill(pid, "TERM");
    next_with(&sock, "STOPPING", Duration::from_secs(30), &log);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no exit\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", log());
}

#[test]
fn no_watchdog_pets_unless_asked_for_this_process() {
    let mut r = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    r.kill9();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // WATCHDOG_PID names another process: the watchdog is not ours to pet.
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
            .args(["serve", "-c"])
            .arg(&r.config)
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    next_with(&sock, "READY", Duration::from_secs(30), &|| String::new());
    // Ten would-be intervals: nothing more arrives.
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) => panic!(
            "unexpected notification: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
    }
}

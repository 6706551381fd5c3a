//! The daemon's log as journald, `docker logs` and a person at a terminal see it: the real
//! binary with its stderr on a pipe (no ANSI escape at all), on a real pseudo-terminal
//! (coloured), on a terminal with `NO_COLOR` set (plain), and in JSON (never an escape); and a
//! client that sends an IP address as TLS SNI (as msmtp does) produces no warning, only a
//! debug line for whoever asks rustls for one.

use crate::relay;

use relay::Relay;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ESC: u8 = 0x1b;

/// The relay process, killed when dropped (even when the test panics).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a reader thread has collected from the daemon's stderr so far.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn collect(&self, mut from: impl Read + Send + 'static) {
        let out = self.0.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // A pty master answers EIO once the last slave is closed: that is the end too.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// Wait (bounded) until the output holds `what`.
    fn wait_for(&self, what: &str) -> Vec<u8> {
        let start = Instant::now();
        loop {
            let b = self.bytes();
            if String::from_utf8_lossy(&b).contains(what) {
                return b;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {what:?} in the log:\n{}",
                String::from_utf8_lossy(&b)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A config of the test harness (then the harness' own relay is stopped: we start our own on
/// the same config, with stderr where each test wants it).
fn config(json: bool) -> (Relay, std::path::PathBuf) {
    let mut r = Relay::start("");
    r.kill9();
    let path = r.config.clone();
    if json {
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "log:\n  level: debug",
            "log:\n  format: json\n  level: debug",
        );
        assert!(text.contains("format: json"));
        std::fs::write(&path, text).unwrap();
    }
    (r, path)
}

fn serve(config: &Path, stderr: Stdio, env: &[(&str, &str)]) -> Daemon {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dkim-relay"));
    c.arg("serve")
        .arg("-c")
        .arg(config)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        c.env(k, v);
    }
    Daemon(c.spawn().expect("spawn dkim-relay"))
}

/// Start on a pipe; the log up to "dkim-relay started".
fn log_on_pipe(config: &Path, env: &[(&str, &str)]) -> Vec<u8> {
    let mut d = serve(config, Stdio::piped(), env);
    let captured = Captured::default();
    captured.collect(d.0.stderr.take().unwrap());
    captured.wait_for("dkim-relay started")
}

/// Start on a fresh pseudo-terminal (openpty); the log up to "dkim-relay started".
fn log_on_pty(config: &Path, env: &[(&str, &str)]) -> Vec<u8> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the integers we pass; no name, termios or
    // window size is given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and belong to nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let _d = serve(config, Stdio::from(slave), env);
    let captured = Captured::default();
    captured.collect(std::fs::File::from(master));
    captured.wait_for("dkim-relay started")
}

#[test]
fn text_log_on_a_pipe_has_no_escapes() {
    let (_r, config) = config(false);
    let log = log_on_pipe(&config, &[]);
    assert!(
        !log.contains(&ESC),
        "ESC in a piped log:\n{}",
        String::from_utf8_lossy(&log)
    );
    assert!(String::from_utf8_lossy(&log).contains(" INFO "));
}

#[test]
fn text_log_on_a_terminal_is_coloured_unless_no_color() {
    let (_r, config) = config(false);
    let log = log_on_pty(&config, &[]);
    assert!(
        log.windows(2).any(|w| w == [ESC, b'[']),
        "no colour on a terminal:\n{}",
        String::from_utf8_lossy(&log)
    );
    let log = log_on_pty(&config, &[("NO_COLOR", "1")]);
    assert!(
        !log.contains(&ESC),
        "ESC despite NO_COLOR:\n{}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn json_log_never_has_escapes() {
    let (_r, config) = config(true);
    for log in [log_on_pty(&config, &[]), log_on_pipe(&config, &[])] {
        assert!(
            !log.contains(&ESC),
            "ESC in JSON:\n{}",
            String::from_utf8_lossy(&log)
        );
        let text = String::from_utf8_lossy(&log);
        let first = text
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a JSON line");
        let v: serde_json::Value = serde_json::from_str(first.trim_end_matches('\r'))
            .unwrap_or_else(|e| panic!("{e}: {first}"));
        assert!(v.get("level").is_some(), "{v}");
    }
}

/// `openssl s_client` with an IP address as SNI, as msmtp sends it; returns once the
/// handshake is done (the server has parsed the ClientHello).
fn handshake_with_ip_sni(addr: std::net::SocketAddr) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", "127.0.0.1", "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("CONNECTION ESTABLISHED") || text.contains("Protocol version"),
        "no TLS handshake: {text}"
    );
}

#[test]
fn ip_address_as_sni_is_not_a_warning() {
    let (r, config) = config(false);
    // At the configured level (debug for our own modules): nothing about SNI at all.
    let mut d = serve(&config, Stdio::piped(), &[]);
    let plain = Captured::default();
    plain.collect(d.0.stderr.take().unwrap());
    plain.wait_for("dkim-relay started");
    handshake_with_ip_sni(r.implicit);
    // A line logged after the handshake: the log read so far is past the ClientHello.
    let _ = Command::new("kill")
        .args(["-HUP", &d.0.id().to_string()])
        .status();
    let log = String::from_utf8_lossy(&plain.wait_for("configuration reloaded")).into_owned();
    assert!(!log.contains("Illegal SNI"), "{log}");
    drop(d);

    // Asked for rustls' debug lines, the operator still finds it, at DEBUG.
    let mut d = serve(
        &config,
        Stdio::piped(),
        &[("RUST_LOG", "dkim_relay=info,rustls=debug")],
    );
    let debug = Captured::default();
    debug.collect(d.0.stderr.take().unwrap());
    debug.wait_for("dkim-relay started");
    handshake_with_ip_sni(r.implicit);
    let log = String::from_utf8_lossy(&debug.wait_for("Illegal SNI")).into_owned();
    let line = log.lines().find(|l| l.contains("Illegal SNI")).unwrap();
    assert!(line.contains("DEBUG"), "{line}");
    drop(d);
}

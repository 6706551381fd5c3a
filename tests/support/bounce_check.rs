//! `dkim-relay bounce-check` as tests run it: a relay configuration with `envelope_tagging`
//! and its secrets file in a temporary directory, the policy daemon as a child process (killed
//! when dropped, even when the test panics), the one-shot command, and a client that speaks
//! Postfix's policy protocol.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dkim-relay");

/// The secret the tests sign with.
pub const SECRET: &str = "bounce-check-test-secret-0123456789abcdef";

/// Write `secrets` (one per line) as a 0600 secrets file at `path`.
pub fn write_secrets(path: &Path, secrets: &[&str]) {
    let mut text = String::from("# test secrets: the first signs\n");
    for s in secrets {
        text.push_str(s);
        text.push('\n');
    }
    // Written aside and renamed: a reload never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write secrets");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename secrets");
}

/// A minimal relay configuration that tags `domains`, in `dir`; returns its path.
pub fn write_config(dir: &Path, domains: &[&str], max_age: &str) -> PathBuf {
    let secrets = dir.join("batv.key");
    if !secrets.exists() {
        write_secrets(&secrets, &[SECRET]);
    }
    let config = dir.join("config.yaml");
    let list: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "hostname: relay.test\nspool_dir: {}\nlisteners:\n  - address: \"127.0.0.1:1\"\n\
             log:\n  level: debug\nenvelope_tagging:\n  domains: [{}]\n  secret_file: {}\n  max_age: {max_age}\n",
            dir.join("spool").display(),
            list.join(", "),
            secrets.display()
        ),
    )
    .expect("write config");
    config
}

/// The library's view of the same configuration: tags made as the relay makes them.
pub fn tagging(
    secrets: &[&str],
    domains: &[&str],
    max_age_days: u16,
) -> dkim_relay::backscatter::Tagging {
    let keys = dkim_relay::backscatter::secret::Keys::from_secrets(secrets).expect("keys");
    dkim_relay::backscatter::Tagging::new(keys, domains, max_age_days)
}

pub fn unix_now() -> i64 {
    dkim_relay::backscatter::unix_now()
}

/// `bounce-check --sender S --recipient R`: (exit code, stdout + stderr).
pub fn one_shot(config: &Path, sender: &str, recipient: &str) -> (i32, String) {
    one_shot_with(config, sender, recipient, &[])
}

/// `one_shot` for a message that came from `client`.
pub fn one_shot_from(config: &Path, sender: &str, recipient: &str, client: &str) -> (i32, String) {
    one_shot_with(config, sender, recipient, &[format!("--client={client}")])
}

fn one_shot_with(config: &Path, sender: &str, recipient: &str, more: &[String]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["bounce-check", "-c"])
        .arg(config)
        .arg(format!("--sender={sender}"))
        .arg(format!("--recipient={recipient}"))
        .args(more)
        .output()
        .expect("run bounce-check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The policy daemon.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `bounce-check -c config ARGS…` and wait until `ready()` is true (a listener
    /// answers). Panics with the daemon's log if it exits or does not get ready in time.
    pub fn start(config: &Path, args: &[String], ready: impl Fn() -> bool) -> Daemon {
        let log = config.with_file_name("bounce-check.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["bounce-check", "-c"])
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn bounce-check");
        let mut d = Daemon {
            child: Some(child),
            log,
        };
        let start = Instant::now();
        while !ready() {
            if let Some(status) = d.try_wait() {
                panic!("bounce-check exited with {status}:\n{}", d.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "bounce-check did not get ready:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Wait for the process to exit (after SIGTERM).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A policy client on one connection (TCP or unix), as Postfix's smtpd is.
pub struct PolicyClient<S: std::io::Read + Write> {
    stream: BufReader<S>,
}

impl PolicyClient<std::net::TcpStream> {
    pub fn tcp(addr: std::net::SocketAddr) -> Self {
        let s = std::net::TcpStream::connect(addr).expect("connect to bounce-check");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        PolicyClient {
            stream: BufReader::new(s),
        }
    }
}

impl PolicyClient<std::os::unix::net::UnixStream> {
    pub fn unix(path: &Path) -> Self {
        let s = std::os::unix::net::UnixStream::connect(path).expect("connect to bounce-check");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        PolicyClient {
            stream: BufReader::new(s),
        }
    }
}

impl<S: std::io::Read + Write> PolicyClient<S> {
    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.get_mut().write_all(bytes);
        let _ = self.stream.get_mut().flush();
    }

    /// Read one answer: its lines up to the empty line, joined. `None` when the server closed
    /// the connection (or said nothing before the read timeout).
    pub fn answer(&mut self) -> Option<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stream.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                return Some(lines.join("\n"));
            }
            lines.push(line.to_string());
        }
    }

    /// A Postfix-like RCPT-stage request; returns the answer (`action=...`).
    pub fn ask(&mut self, sender: &str, recipient: &str) -> Option<String> {
        self.send(request(sender, recipient).as_bytes());
        self.answer()
    }
}

/// The attributes Postfix 3.7 sends at RCPT (some trimmed), ending with the empty line.
pub fn request(sender: &str, recipient: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.25\nclient_name=mx.example.net\nreverse_client_name=mx.example.net\n\
         helo_name=mx.example.net\nsender={sender}\nrecipient={recipient}\nrecipient_count=0\n\
         queue_id=\ninstance=1a2b.3c4d5e6f.1\nsize=0\netrn_domain=\nstress=\nsasl_method=\n\
         sasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
         encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\
         server_address=127.0.0.1\nserver_port=25\ncompatibility_level=3.6\nmail_version=3.7.11\n\n"
    )
}

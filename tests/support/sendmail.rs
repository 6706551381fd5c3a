//! The sendmail front end as programs run it: a temporary directory with `sendmail` and `mailq`
//! symlinks to the real binary and a sendmail config, the process run with a message on stdin
//! and a deadline, and checks of what a relay delivered (signatures verified by mail-auth
//! through the test DNS server and by dkimpy). Needs the `relay` and `dns_server` modules.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one sendmail or queue command may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct Front {
    pub dir: tempfile::TempDir,
    /// Where to submit (`$DKIM_RELAY_SUBMIT`).
    pub submit: String,
    /// Extra environment for every run.
    pub env: Vec<(String, String)>,
}

impl Front {
    /// Symlinks and a sendmail config (`config` is its YAML text).
    pub fn new(submit: &str, config: &str) -> Front {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = env!("CARGO_BIN_EXE_dkim-relay");
        for name in ["sendmail", "mailq"] {
            std::os::unix::fs::symlink(bin, dir.path().join(name)).expect("symlink");
        }
        std::fs::write(dir.path().join("sendmail.yaml"), config).expect("sendmail config");
        Front {
            dir,
            submit: submit.to_string(),
            env: Vec::new(),
        }
    }

    pub fn sendmail_path(&self) -> PathBuf {
        self.dir.path().join("sendmail")
    }

    pub fn mailq_path(&self) -> PathBuf {
        self.dir.path().join("mailq")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sendmail.yaml")
    }

    /// The environment a sendmail run gets: ours only, never the host's sendmail config.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("DKIM_RELAY_SUBMIT", &self.submit)
            .env("DKIM_RELAY_SENDMAIL_CONFIG", self.config_path())
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Run `sendmail ARGS` with `stdin`.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.command(&self.sendmail_path());
        c.args(args);
        run(c, stdin)
    }

    /// The same from an async test, without blocking the runtime's workers.
    pub async fn sendmail_async(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut c = self.command(&self.sendmail_path());
        c.args(args);
        let stdin = stdin.to_vec();
        tokio::task::spawn_blocking(move || run(c, &stdin))
            .await
            .expect("sendmail thread")
    }
}

/// Run a prepared command with `stdin`, within the deadline.
pub fn run(mut c: Command, stdin: &[u8]) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    if let Some(mut i) = child.stdin.take() {
        // A program that exits without reading all of it is not an error here.
        let _ = i.write_all(stdin);
    }
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{c:?} did not finish within {DEADLINE:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn run_async(c: Command, stdin: &[u8]) -> Output {
    let stdin = stdin.to_vec();
    tokio::task::spawn_blocking(move || run(c, &stdin))
        .await
        .expect("command thread")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// This process's uid and its login name (the relay maps the socket peer's uid the same way).
pub fn uid() -> u32 {
    dkim_relay::sys::euid()
}

pub fn user_name() -> String {
    dkim_relay::sys::user_name(uid()).unwrap_or_else(|| uid().to_string())
}

/// A unix_user client for this process's uid, allowed to send as `allow` (YAML list).
pub fn unix_client(allow: &str) -> String {
    format!("  - unix_user: \"{}\"\n    allow_from: {allow}\n", uid())
}

/// Delivery of everything to `sink_port` on loopback, retried on `retry`.
pub fn relay_host(sink_port: u16, retry: &str) -> String {
    format!(
        "delivery:\n  mode: relay_host\n  retry: {retry}\n  connect_timeout: 5s\n  command_timeout: 10s\n  relay_host:\n    address: \"127.0.0.1:{sink_port}\"\n    tls: none\n"
    )
}

/// The DKIM records of the dev keys, and the verification every sendmail test ends with, are
/// the relay kit's.
pub use crate::relay::{assert_verifies, dkim_dns as dns};

/// The header section of a delivered message.
pub fn header_section(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    String::from_utf8_lossy(&message[..end]).into_owned()
}

/// The header fields with this name (case-insensitive), unfolded.
pub fn fields(message: &[u8], name: &str) -> Vec<String> {
    let head = header_section(message)
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    head.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .collect()
}

//! The real `dkim-relay` binary as a test runs it: a temporary directory with its config,
//! spool and outbox, free loopback ports, start / kill -9 / restart, and the development keys
//! with the DNS records that publish them.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The development DKIM keys (config/dev-keys) and their selectors.
pub const RSA_SELECTOR: &str = "dev2026r";
pub const ED_SELECTOR: &str = "dev2026e";

pub fn rsa_key() -> PathBuf {
    Path::new(ROOT).join("config/dev-keys/example.com.dev2026r.pem")
}

pub fn ed_key() -> PathBuf {
    Path::new(ROOT).join("config/dev-keys/example.com.dev2026e.pem")
}

pub fn cert() -> String {
    format!("{ROOT}/certs/dev-cert.pem")
}

pub fn cert_key() -> String {
    format!("{ROOT}/certs/dev-key.pem")
}

/// The TXT record value publishing a key.
pub fn dkim_record(key: &Path) -> String {
    let k = dkim_relay::dkim::keys::PrivateKey::load(key).expect("dev key");
    format!(
        "v=DKIM1; k={}; p={}",
        k.algorithm.key_type(),
        k.public_key_base64()
    )
}

/// (name, value) of the records for both dev selectors of example.com.
pub fn dkim_records() -> Vec<(String, String)> {
    vec![
        (
            format!("{RSA_SELECTOR}._domainkey.example.com"),
            dkim_record(&rsa_key()),
        ),
        (
            format!("{ED_SELECTOR}._domainkey.example.com"),
            dkim_record(&ed_key()),
        ),
    ]
}

/// A TCP port free on 127.0.0.1 right now, and likely to stay free until the relay binds it.
///
/// Port 0 would hand out a port from the kernel's ephemeral range, which every outgoing
/// connection of every test (and of the relay) draws from too: between our probe and the
/// relay's bind, a client socket can take it (CI saw exactly that, "Address already in use").
/// So we walk the range below it (10000..32768), from a start that differs per test process,
/// and never hand out the same port twice in one process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7919).wrapping_add(nanos) % SPAN
    };
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 in 10000..32768")
}

pub struct Relay {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub plain: SocketAddr,
    pub starttls: SocketAddr,
    pub implicit: SocketAddr,
    pub metrics: SocketAddr,
    /// The unix listener's socket, when started with one (`start_with_unix`).
    pub unix: Option<PathBuf>,
    child: Option<Child>,
}

/// The password of the test user `app` (hash below).
pub const PASSWORD: &str = "demo-password";
pub const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$hSJuQlGz8CKlJ+dWRClxAA$B8kFxHpxIFwmCj3EWDscq2zFaAi3Ks4L/XbKDvvAmTc";

impl Relay {
    /// Write a config (`extra` is appended: delivery, dns, limits…) and start the relay.
    pub fn start(extra: &str) -> Relay {
        Self::start_full("relay.test", false, "", extra)
    }

    /// The value of one series (`name` or `name{labels}`, as exported) on this relay's
    /// /metrics; 0 when the series is not exported (yet). A relay that does not answer fails
    /// the test: a dead one must not read as zero.
    pub fn metric(&self, series: &str) -> f64 {
        let (code, body) = http_get(self.metrics, "/metrics").expect("/metrics answers");
        assert_eq!(code, 200, "/metrics: {body}");
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// As `start`, with this `hostname` (the DSN sender's domain, for DSN signing).
    pub fn start_named(hostname: &str, extra: &str) -> Relay {
        Self::start_full(hostname, false, "", extra)
    }

    /// Like `start`, plus a unix listener at `<dir>/submit.sock` and `clients` (YAML list
    /// items, indented two spaces, e.g. `  - unix_user: "0"`) after the built-in clients.
    pub fn start_with_unix(clients: &str, extra: &str) -> Relay {
        Self::start_full("relay.test", true, clients, extra)
    }

    fn start_full(hostname: &str, with_unix: bool, clients: &str, extra: &str) -> Relay {
        // A port can still be taken between our probe and the relay's bind (another test
        // process): then start again on fresh ports rather than fail the test.
        for attempt in 1.. {
            let mut relay = Self::configure(hostname, with_unix, clients, extra);
            match relay.try_spawn() {
                Ok(()) => return relay,
                Err(log) if attempt < 4 && log.contains("Address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        unreachable!()
    }

    fn configure(hostname: &str, with_unix: bool, clients: &str, extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let unix = with_unix.then(|| dir.path().join("submit.sock"));
        let unix_listener = unix
            .as_ref()
            .map(|p| format!("  - unix: {}\n", p.display()))
            .unwrap_or_default();
        let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let starttls = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let implicit = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = dir.path().join("config.yaml");
        let yaml = format!(
            r#"hostname: {hostname}
spool_dir: {spool}
listeners:
  - address: "{plain}"
    tls: none
  - address: "{starttls}"
    tls: starttls
  - address: "{implicit}"
    tls: implicit
{unix_listener}tls:
  certificate: {cert}
  private_key: {cert_key}
clients:
  - user: app
    password_hash: "{PASSWORD_HASH}"
    allow_from: ["example.com", "*.example.com"]
  - user: other
    password_hash: "{PASSWORD_HASH}"
    allow_from: ["other.test"]
{clients}
dkim:
  domains:
    example.com:
      - selector: {RSA_SELECTOR}
        private_key: {rsa}
      - selector: {ED_SELECTOR}
        private_key: {ed}
    other.test:
      - selector: o1
        private_key: {ed}
metrics:
  address: "{metrics}"
{log}{extra}
"#,
            spool = dir.path().join("spool").display(),
            // Debug unless the test sets its own `log:` section.
            log = if extra.lines().any(|l| l.starts_with("log:")) {
                ""
            } else {
                "log:\n  level: debug\n"
            },
            cert = cert(),
            cert_key = cert_key(),
            rsa = rsa_key().display(),
            ed = ed_key().display(),
            // A relative `directory: outbox` would land in the working directory (the repo).
            extra = with_loopback_dns(&extra.replace(
                "directory: outbox",
                &format!("directory: {}", dir.path().join("outbox").display())
            )),
        );
        std::fs::write(&config, yaml).expect("write config");
        Relay {
            dir,
            config,
            plain,
            starttls,
            implicit,
            metrics,
            unix,
            child: None,
        }
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Start the process and wait until it accepts connections.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("{log}");
        }
    }

    /// As `spawn`, returning what went wrong (with the relay's log) instead of panicking.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("relay.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
            .arg("serve")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dkim-relay");
        self.child = Some(child);
        let start = Instant::now();
        // Ready means /readyz says so (listeners bound, spool writable). An SMTP connection as
        // the probe would hold a session, and its per-address slot, until the relay saw it end:
        // a test that counts connections would race it.
        while !self.ready() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("relay did not start:\n{}", self.log()));
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("relay exited with {status}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// `GET /readyz` answers 200.
    pub fn ready(&self) -> bool {
        http_get(self.metrics, "/readyz").is_some_and(|(code, _)| code == 200)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("relay.log")).unwrap_or_default()
    }

    /// kill -9: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running process's id (to read /proc/PID/status).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Messages still in the spool.
    pub fn queued(&self) -> usize {
        std::fs::read_dir(self.spool().join("queue"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Verify every DKIM-Signature with dkimpy (Debian's python3-dkim) against `records`.
/// Returns None when dkimpy is not installed (the caller skips), else whether all passed and
/// dkimpy's output.
pub fn dkimpy_verify(message: &[u8], records: &[(String, String)]) -> Option<(bool, String)> {
    let python = python_with_dkimpy();
    let Some(python) = python else {
        // In CI the verifier is installed by .ci/run: its absence is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "dkimpy (python3-dkim) is required in CI"
        );
        return None;
    };
    let dir = tempfile::tempdir().ok()?;
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, message).ok()?;
    let rec = dir.path().join("records.json");
    let map: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    std::fs::write(&rec, serde_json::to_vec(&map).ok()?).ok()?;
    let out = Command::new(python)
        .arg(format!("{ROOT}/tests/support/dkimpy_verify.py"))
        .arg("--records")
        .arg(&rec)
        .arg(&msg)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), text))
}

/// Debian's python3-dkim installs for /usr/bin/python3, which may not be the first python3 on
/// PATH (pyenv): try both.
fn python_with_dkimpy() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import dkim"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Tests talk to loopback only: a config without a `dns:` section gets a resolver pointed at
/// a closed loopback port and no DNS doctor, instead of the system resolver.
fn with_loopback_dns(extra: &str) -> String {
    if extra.lines().any(|l| l.starts_with("dns:")) {
        extra.to_string()
    } else {
        format!("{extra}\ndns:\n  nameservers: [\"127.0.0.1:9\"]\n  check_interval: 0s\n")
    }
}

/// A blocking HTTP/1.1 GET on loopback: (status, body), or `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out);
    let code = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((code, body))
}

/// What a command of the real binary printed, and how it exited (-1: killed by a signal).
pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `dkim-relay ARGS` as an operator runs it: stdin empty, `$DKIM_RELAY_CONFIG` unset.
pub fn run_cli(args: &[&str]) -> CliOut {
    let out = Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
        .args(args)
        .env_remove("DKIM_RELAY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run dkim-relay");
    CliOut {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A DNS server with the dev DKIM keys' records.
pub fn dkim_dns() -> crate::dns_server::DnsServer {
    let dns = crate::dns_server::DnsServer::start();
    for (name, value) in dkim_records() {
        dns.add_txt_str(&name, &value);
    }
    dns
}

/// `dkim_dns`, plus example.net's MX at mx.example.net, 127.0.0.1.
pub fn mx_dns() -> crate::dns_server::DnsServer {
    let dns = dkim_dns();
    dns.add_mx("example.net", 10, "mx.example.net");
    dns.add_a("mx.example.net", "127.0.0.1".parse().expect("address"));
    dns
}

/// Every signature of `message` passes with mail-auth (through `dns`) and dkimpy.
pub async fn assert_verifies(dns: &crate::dns_server::DnsServer, message: &[u8]) {
    use mail_auth::{AuthenticatedMessage, DkimResult};
    let resolver = dkim_relay::resolver::build(Some(&[dns.addr()])).expect("resolver");
    let parsed = AuthenticatedMessage::parse(message).expect("parse signed message");
    let results = resolver.verify_dkim(&parsed).await;
    assert_eq!(results.len(), 2, "two signatures expected");
    for r in &results {
        assert_eq!(
            r.result(),
            &DkimResult::Pass,
            "mail-auth: {r:?}\n{}",
            String::from_utf8_lossy(message)
        );
    }
    match dkimpy_verify(message, &dkim_records()) {
        Some((ok, out)) => assert!(ok, "dkimpy: {out}\n{}", String::from_utf8_lossy(message)),
        None => eprintln!("SKIP dkimpy: python3-dkim not installed"),
    }
}

/// A kB figure from /proc/PID/status.
pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

//! A real validating resolver for tests: Debian's `unbound` on a 127.0.0.1 port, serving the
//! test's zones itself (`auth-zone` with `for-upstream`: its iterator takes them as the zones'
//! authoritative data and its validator checks them like any other answer). A zone is signed
//! in the test with `ldns-keygen` and `ldns-signzone` (ldnsutils), and its KSK's DS becomes a
//! trust anchor, so its answers come back with the AD bit; an unsigned zone gets none (an
//! insecure answer); and a signed zone can have chosen signatures spoiled after signing, so
//! the resolver answers SERVFAIL for those RRsets (bogus) — with Extended DNS Error 6.
//!
//! Both packages come from scripts/install-test-deps.sh. The process is started with a
//! parent-death signal and stopped by pid when the `Unbound` is dropped (also when a test
//! panics); one held in a `static` goes when the test process exits.
//!
//! Declared once in tests/e2e/main.rs; use it as `crate::unbound`.
#![allow(dead_code)]

use mail_auth::hickory_resolver::proto::op::{Message, MessageType, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::{Name, RecordType};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A zone to serve: its origin and records (zone file lines, relative names allowed).
pub struct Zone {
    origin: String,
    records: Vec<String>,
    signed: bool,
    /// (owner, type) whose RRSIGs are spoiled after signing.
    spoiled: Vec<(String, String)>,
}

impl Zone {
    /// A zone signed in the test, its DS a trust anchor: answers are secure.
    pub fn signed(origin: &str) -> Zone {
        Zone::new(origin, true)
    }

    /// A zone without signatures or trust anchor: answers are insecure.
    pub fn unsigned(origin: &str) -> Zone {
        Zone::new(origin, false)
    }

    fn new(origin: &str, signed: bool) -> Zone {
        let origin = origin.trim_end_matches('.').to_ascii_lowercase();
        Zone {
            records: vec![
                format!("@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300"),
                format!("@ IN NS ns.{origin}."),
                "ns IN A 127.0.0.1".to_string(),
            ],
            origin,
            signed,
            spoiled: Vec::new(),
        }
    }

    /// Add a record, as a zone file line (`mx IN A 127.0.0.5`, `@ IN MX 10 mx`).
    pub fn record(mut self, line: &str) -> Zone {
        self.records.push(line.to_string());
        self
    }

    /// Spoil the signature of the `rtype` RRset at `owner` (relative, or `@`): the resolver
    /// will find it bogus.
    pub fn spoil(mut self, owner: &str, rtype: &str) -> Zone {
        assert!(self.signed, "only a signed zone has signatures to spoil");
        let fqdn = if owner == "@" {
            format!("{}.", self.origin)
        } else {
            format!("{owner}.{}.", self.origin)
        };
        self.spoiled
            .push((fqdn.to_ascii_lowercase(), rtype.to_ascii_uppercase()));
        self
    }

    /// Write the zone file (signed, spoiled as asked) into `dir`; return its path and, for a
    /// signed zone, the path of its trust anchor (the KSK's DS record).
    fn write(&self, dir: &Path) -> (std::path::PathBuf, Option<std::path::PathBuf>) {
        let file = dir.join(format!("{}.zone", self.origin));
        let mut text = format!("$ORIGIN {}.\n$TTL 300\n", self.origin);
        for r in &self.records {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(&file, text).expect("write zone");
        if !self.signed {
            return (file, None);
        }
        let keygen = |ksk: bool| {
            let mut cmd = Command::new("ldns-keygen");
            cmd.current_dir(dir).args(["-a", "ECDSAP256SHA256"]);
            if ksk {
                cmd.arg("-k");
            }
            let out = cmd.arg(&self.origin).output().expect("run ldns-keygen");
            assert!(out.status.success(), "ldns-keygen: {out:?}");
            String::from_utf8(out.stdout)
                .expect("key name")
                .trim()
                .to_string()
        };
        let (ksk, zsk) = (keygen(true), keygen(false));
        // Fixed validity far on both sides of now: no clock arithmetic, no skew trouble.
        let out = Command::new("ldns-signzone")
            .current_dir(dir)
            .args(["-i", "20200101000000", "-e", "20400101000000"])
            .arg(&file)
            .args([&ksk, &zsk])
            .output()
            .expect("run ldns-signzone");
        assert!(out.status.success(), "ldns-signzone: {out:?}");
        let signed = dir.join(format!("{}.zone.signed", self.origin));
        if !self.spoiled.is_empty() {
            let text = std::fs::read_to_string(&signed).expect("read signed zone");
            let mut hits = 0;
            let lines: Vec<String> = text
                .lines()
                .map(|line| match self.spoil_line(line) {
                    Some(l) => {
                        hits += 1;
                        l
                    }
                    None => line.to_string(),
                })
                .collect();
            assert_eq!(
                hits,
                self.spoiled.len(),
                "every spoiled RRset has one RRSIG"
            );
            std::fs::write(&signed, lines.join("\n") + "\n").expect("write spoiled zone");
        }
        (signed, Some(dir.join(format!("{ksk}.ds"))))
    }

    /// The RRSIG line covering a spoiled RRset, with its signature changed.
    fn spoil_line(&self, line: &str) -> Option<String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // owner TTL IN RRSIG covered-type algorithm labels ttl expiration inception tag signer sig
        if fields.len() < 13 || fields[3] != "RRSIG" {
            return None;
        }
        let covered = (
            fields[0].to_ascii_lowercase(),
            fields[4].to_ascii_uppercase(),
        );
        if !self.spoiled.contains(&covered) {
            return None;
        }
        let mut fields: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        let sig = fields.last_mut()?;
        let first = if sig.starts_with('A') { "B" } else { "A" };
        sig.replace_range(0..1, first);
        Some(fields.join(" "))
    }
}

/// Are unbound and ldnsutils installed? In CI they must be.
pub fn available() -> bool {
    let found = Path::new("/usr/sbin/unbound").exists()
        && Command::new("ldns-signzone")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "unbound and ldnsutils are required in CI (scripts/install-test-deps.sh)"
    );
    found
}

pub struct Unbound {
    /// Where it answers, over UDP and TCP.
    pub addr: SocketAddr,
    pid: i32,
    /// Reaps the process; ends when it does.
    keeper: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Unbound {
    /// Sign and write `zones`, start unbound serving them, and wait until it answers.
    pub fn start(zones: Vec<Zone>) -> Unbound {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut anchors = String::new();
        let mut auth = String::new();
        for z in &zones {
            let (file, anchor) = z.write(dir.path());
            if let Some(a) = anchor {
                anchors.push_str(&format!("  trust-anchor-file: \"{}\"\n", a.display()));
            }
            auth.push_str(&format!(
                "auth-zone:\n  name: \"{}.\"\n  zonefile: \"{}\"\n  for-upstream: yes\n  \
                 for-downstream: no\n  fallback-enabled: no\n",
                z.origin,
                file.display()
            ));
        }
        let probe = Name::from_ascii(format!("{}.", zones[0].origin)).expect("zone name");
        let d = dir.path().to_path_buf();
        Self::launch(dir, &probe, move |port| config(&d, port, &anchors, &auth))
    }

    /// Start unbound with the configuration `config(port)` gives, on a free port, and wait
    /// until it answers NOERROR for `probe`'s SOA.
    pub fn start_with(probe: &str, config: impl Fn(u16) -> String) -> Unbound {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = Name::from_ascii(probe).expect("probe name");
        Self::launch(dir, &probe, config)
    }

    fn launch(dir: tempfile::TempDir, probe: &Name, config: impl Fn(u16) -> String) -> Unbound {
        // A port taken between our probe and unbound's bind makes it exit: try another.
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let conf = dir.path().join("unbound.conf");
            std::fs::write(&conf, config(port)).expect("conf");
            let (tx, rx) = mpsc::channel();
            let cmd_conf = conf.clone();
            // The keeper thread spawns and reaps unbound, and lives as long as it does: the
            // parent-death signal fires when the spawning thread ends.
            let keeper = std::thread::spawn(move || {
                let mut cmd = Command::new("/usr/sbin/unbound");
                cmd.args(["-d", "-c"])
                    .arg(&cmd_conf)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(mut child) => {
                        let _ = tx.send(Some(child.id() as i32));
                        let _ = child.wait();
                    }
                    Err(_) => {
                        let _ = tx.send(None);
                    }
                }
            });
            let pid = rx.recv().ok().flatten().expect("start /usr/sbin/unbound");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if wait_ready(addr, &keeper, probe) {
                return Unbound {
                    addr,
                    pid,
                    keeper: Some(keeper),
                    dir,
                };
            }
            kill(pid, keeper);
        }
        panic!(
            "unbound did not start; its log:\n{}",
            std::fs::read_to_string(dir.path().join("unbound.log")).unwrap_or_default()
        );
    }

    /// unbound's log (validation failures are logged), for assertions' messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            kill(self.pid, k);
        }
    }
}

/// Stop our unbound: SIGKILL by pid, then let the keeper reap it.
fn kill(pid: i32, keeper: std::thread::JoinHandle<()>) {
    // SAFETY: kill(2) on our own child, which the keeper has not reaped yet (it would then
    // have finished, and we hold its handle until after this call), so the pid is not reused.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let _ = keeper.join();
}

/// Poll with an SOA query until unbound answers (true), or until it exits or 20 s pass.
fn wait_ready(addr: SocketAddr, keeper: &std::thread::JoinHandle<()>, probe: &Name) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if keeper.is_finished() {
            return false;
        }
        if answers(addr, probe) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn answers(addr: SocketAddr, probe: &Name) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let mut m = Message::query();
    m.add_query(Query::query(probe.clone(), RecordType::SOA));
    m.metadata.recursion_desired = true;
    let Ok(bytes) = m.to_vec() else { return false };
    if socket.send_to(&bytes, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => Message::from_vec(&buf[..n]).is_ok_and(|a| {
            a.metadata.message_type == MessageType::Response
                && a.metadata.response_code == ResponseCode::NoError
        }),
        Err(_) => false,
    }
}

fn config(dir: &Path, port: u16, anchors: &str, auth: &str) -> String {
    let d = dir.display();
    format!(
        "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-daemonize: no\n  \
         username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
         use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 1\n  val-log-level: 2\n  \
         num-threads: 1\n  so-reuseport: no\n  msg-cache-size: 4m\n  rrset-cache-size: 4m\n  \
         module-config: \"validator iterator\"\n  access-control: 127.0.0.0/8 allow\n  \
         do-not-query-localhost: no\n  ede: yes\n  local-zone: \"test.\" nodefault\n\
         {anchors}{auth}remote-control:\n  control-enable: no\n"
    )
}

/// A port free for both UDP and TCP on 127.0.0.1 now, below the ephemeral range (where every
/// outgoing connection of every test draws its source port from).
fn free_udp_and_tcp_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        .wrapping_add(std::process::id().wrapping_mul(7919));
    for i in 0..20_000u32 {
        let port = (12_000 + (seed.wrapping_add(i.wrapping_mul(7))) % 20_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port for unbound")
}

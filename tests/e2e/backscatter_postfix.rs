//! A real Postfix (Debian's package) as the domain's inbound MX, with `dkim-relay bounce-check`
//! as its `check_policy_service` on a unix socket named relative to the queue directory (the
//! form docs/backscatter.md gives, which works with smtpd chrooted or not) and the tag-stripping
//! canonical map of the same page. The tagged address is the one the real relay put in MAIL
//! FROM: a bounce to it is accepted and reaches the mailbox under the plain address; a bounce to
//! the plain address, to an expired tag or to a wrong HMAC is refused with 5.7.1; ordinary mail
//! is not touched.
//!
//! The Postfix instance is private: its own config, queue and data directories in a temporary
//! directory, smtpd on a free loopback port, stopped by `postfix stop` and by pid when the test
//! ends (also when it panics). Needs root (Postfix's master) and the `postfix` package
//! (scripts/install-test-deps.sh); without them the test says so and skips, except in CI.

use crate::bounce_check;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use smtp_client::Client;
use smtp_sink::Sink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const POSTFIX: &str = "/usr/sbin/postfix";

/// A private Postfix instance.
struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postfix {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn queue(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// Relay mail for example.com to `[127.0.0.1]:sink_port`, after asking the policy server
    /// on `spool/bounce-check/policy.sock` (relative to the queue directory).
    fn start(sink_port: u16) -> Postfix {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        chmod(root, 0o755); // Postfix's own users walk through it.
        let conf = root.join("etc");
        for d in ["etc", "spool/bounce-check", "data"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        chmod(&root.join("spool/bounce-check"), 0o755);
        run(
            "chown",
            &["postfix".as_ref(), root.join("data").as_os_str()],
        );
        // The package's master.cf and support files, the smtpd service moved to our port.
        for f in [
            "master.cf",
            "dynamicmaps.cf",
            "postfix-files",
            "postfix-script",
            "post-install",
        ] {
            let from = Path::new("/etc/postfix").join(f);
            if from.exists() {
                std::fs::copy(&from, conf.join(f)).unwrap();
            }
        }
        for d in ["dynamicmaps.cf.d", "postfix-files.d"] {
            let from = Path::new("/etc/postfix").join(d);
            if from.is_dir() {
                run("cp", &["-r".as_ref(), from.as_os_str(), conf.as_os_str()]);
            }
        }
        let port = relay::free_port();
        let master = std::fs::read_to_string(conf.join("master.cf")).unwrap();
        let mut master: String = master
            .lines()
            .map(|l| {
                if l.starts_with("smtp ") && l.contains(" inet ") {
                    format!("#{l}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        master.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd\n"));
        std::fs::write(conf.join("master.cf"), master).unwrap();
        // docs/backscatter.md's map, verbatim but for the test domain.
        std::fs::write(
            conf.join("batv_recipient"),
            "/^prvs=[0-9]{4}[0-9a-f]{6}=(.+@example\\.com)$/    ${1}\n",
        )
        .unwrap();
        let r = root.display();
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {r}/spool
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.com
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
# Known recipients only: the canonical map makes the tagged form known too.
relay_recipient_maps = inline:{{ app@example.com=ok, postmaster@example.com=ok }}
relay_transport = smtp:[127.0.0.1]:{sink_port}
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:bounce-check/policy.sock
recipient_canonical_maps = regexp:{r}/etc/batv_recipient
recipient_canonical_classes = envelope_recipient
maillog_file = {r}/postfix.log
maillog_file_prefixes = {r}
biff = no
"
            ),
        )
        .unwrap();
        let pf = Postfix { dir, port };
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(pf.conf())
            .arg("start")
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {out:?}\nlog:\n{}",
            pf.log()
        );
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Postfix smtpd not listening on {port}:\n{}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.queue().join("pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .output();
        let Some(pid) = pid else { return };
        let alive = || Path::new(&format!("/proc/{pid}")).exists();
        let start = Instant::now();
        while alive() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            run("kill", &["-9".as_ref(), pid.to_string().as_ref()]);
        }
    }
}

fn run(cmd: &str, args: &[&std::ffi::OsStr]) {
    let s = Command::new(cmd).args(args).status().expect(cmd);
    assert!(s.success(), "{cmd} {args:?}: {s}");
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Can this machine run a private Postfix? In CI it must.
fn postfix_available() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ok = Path::new(POSTFIX).exists() && unsafe { libc::geteuid() } == 0;
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs root and Debian's postfix (scripts/install-test-deps.sh)"
        );
        eprintln!("SKIP: needs root and Debian's postfix (scripts/install-test-deps.sh)");
    }
    ok
}

const BOUNCE: &[u8] = b"From: MAILER-DAEMON@mx.example.net\r\nTo: app@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\r\nYour message could not be delivered.\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn postfix_with_bounce_check_refuses_backscatter_and_takes_real_bounces() {
    if !postfix_available() {
        return;
    }
    // 1. The relay tags app@example.com's mail; the tagged MAIL FROM is what a real bounce
    //    comes back to.
    let outside = Sink::start(None).await;
    let keys = tempfile::tempdir().unwrap();
    let secrets = keys.path().join("batv.key");
    bounce_check::write_secrets(&secrets, &[bounce_check::SECRET]);
    let relay = relay::Relay::start(&format!(
        "delivery:\n  mode: mx\n  tls: none\n  routes:\n    example.net: \"{}\"\n\
         envelope_tagging:\n  domains: [example.com]\n  secret_file: {}\n",
        outside.addr,
        secrets.display()
    ));
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg = b"From: app@example.com\r\nTo: someone@example.net\r\nSubject: hello\r\n\r\nhi\r\n";
    assert_eq!(
        c.send("app@example.com", &["someone@example.net"], msg)
            .await
            .code,
        250
    );
    let sent = outside.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(sent.len(), 1, "relay log:\n{}", relay.log());
    let tagged = sent[0].sender.clone();
    assert!(
        tagged.starts_with("prvs=") && tagged.ends_with("=app@example.com"),
        "{tagged}"
    );

    // 2. The domain's MX: Postfix asking bounce-check (with the relay's own config file).
    let mailbox = Sink::start(None).await;
    let postfix = Postfix::start(mailbox.addr.port());
    let sock = postfix.queue().join("bounce-check/policy.sock");
    let _daemon = bounce_check::Daemon::start(
        &relay.config,
        &[
            format!("--listen=unix:{}", sock.display()),
            "--socket-mode=0666".into(),
        ],
        || sock.exists(),
    );

    let t = bounce_check::tagging(&[bounce_check::SECRET], &["example.com"], 7);
    let now = bounce_check::unix_now();
    let expired = t.tag("app@example.com", now - 30 * 86_400).unwrap();
    let mut wrong = tagged.clone().into_bytes();
    wrong[14] = if wrong[14] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();

    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", postfix.port).parse().unwrap();
    let mut mx = Client::connect(addr).await;
    assert_eq!(mx.read_reply().await.code, 220, "{}", postfix.log());
    assert_eq!(mx.cmd("EHLO mx.example.net").await.code, 250);

    // Backscatter: refused at RCPT with 5.7.1.
    assert_eq!(mx.cmd("MAIL FROM:<>").await.code, 250);
    for (rcpt, why) in [
        ("app@example.com", "untagged"),
        (expired.as_str(), "expired"),
        (wrong.as_str(), "invalid"),
    ] {
        let r = mx.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(r.code, 554, "{rcpt}: {r:?}\n{}", postfix.log());
        assert!(
            r.text.starts_with("5.7.1 ") && r.text.contains(why),
            "{rcpt}: {r:?}"
        );
    }
    // A real bounce, to the tag the relay used: accepted.
    let r = mx.cmd(&format!("RCPT TO:<{tagged}>")).await;
    assert_eq!(r.code, 250, "{r:?}\n{}", postfix.log());
    let r = mx.data(BOUNCE).await;
    assert_eq!(r.code, 250, "{r:?}");
    // postmaster takes bounces untagged.
    assert_eq!(mx.cmd("MAIL FROM:<>").await.code, 250);
    assert_eq!(mx.cmd("RCPT TO:<postmaster@example.com>").await.code, 250);
    assert_eq!(mx.cmd("RSET").await.code, 250);

    // Ordinary mail is unaffected; unknown users are still refused by Postfix itself.
    assert_eq!(mx.cmd("MAIL FROM:<friend@example.net>").await.code, 250);
    let r = mx.cmd("RCPT TO:<app@example.com>").await;
    assert_eq!(r.code, 250, "{r:?}");
    let r = mx.cmd("RCPT TO:<nobody@example.com>").await;
    assert_eq!(r.code, 550, "{r:?}");
    let r = mx
        .data(b"From: friend@example.net\r\nTo: app@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    mx.cmd("QUIT").await;

    // Both reach the mailbox, the bounce under the plain address (the canonical map).
    let got = mailbox.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "Postfix log:\n{}", postfix.log());
    let bounce = got
        .iter()
        .find(|m| m.sender.is_empty())
        .expect("the bounce");
    assert_eq!(bounce.recipients, ["app@example.com"]);
    let ordinary = got
        .iter()
        .find(|m| !m.sender.is_empty())
        .expect("ordinary mail");
    assert_eq!(ordinary.sender, "friend@example.net");
    assert_eq!(ordinary.recipients, ["app@example.com"]);
}

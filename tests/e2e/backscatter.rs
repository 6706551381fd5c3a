//! Backscatter defence end to end: the real relay tags the envelope sender of a tagged domain
//! on its way to a real receiving SMTP server, the tag verifies with `bounce-check`, and the
//! receiver still sees SPF, DKIM and DMARC pass (authheaders, an independent implementation,
//! and mail-auth, both resolving through the test DNS server). The relay's own DSN to a tagged
//! sender goes to the untagged address and passes a bounce check that trusts the relay. The
//! `bounce-check` policy daemon answers
//! Postfix's protocol on TCP and unix sockets, bounds what it reads, reloads on SIGHUP and
//! counts its verdicts.

use crate::bounce_check;
use crate::dns_server;
use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use bounce_check::{Daemon, PolicyClient};
use dns_server::DnsServer;
use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::path::Path;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

/// The dev DKIM records, SPF authorizing loopback (where the relay connects from) and a strict
/// DMARC policy for example.com.
fn dns() -> DnsServer {
    let dns = DnsServer::start();
    for (name, value) in relay::dkim_records() {
        dns.add_txt_str(&name, &value);
    }
    dns.add_txt_str("example.com", "v=spf1 ip4:127.0.0.1 -all");
    dns.add_txt_str("_dmarc.example.com", "v=DMARC1; p=reject; adkim=s; aspf=s");
    dns
}

/// A relay delivering example.net and example.com to `sink`, tagging example.com.
fn tagging_relay(dns: &DnsServer, sink: &Sink, secrets: &Path) -> Relay {
    Relay::start(&format!(
        "delivery:\n  mode: mx\n  tls: none\n  retry: [1s]\n  delay_warning: 0s\n  routes:\n    example.net: \"{sink}\"\n    example.com: \"{sink}\"\n\
         dns:\n  nameservers: [\"{dns}\"]\n  check_interval: 0s\n\
         envelope_tagging:\n  domains: [example.com]\n  secret_file: {secrets}\n  max_age: 7d\n  accept_bounces_from: [\"127.0.0.1\"]\n",
        sink = sink.addr,
        dns = dns.addr(),
        secrets = secrets.display()
    ))
}

async fn submit(relay: &Relay, from: &str, to: &[&str], message: &[u8]) -> smtp_client::Reply {
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let r = c.send(from, to, message).await;
    c.cmd("QUIT").await;
    r
}

const MESSAGE: &[u8] = b"From: Billing <app@example.com>\r\nTo: someone@example.net\r\nSubject: invoice\r\n\r\nYour invoice is attached.\r\n";

/// authheaders' Authentication-Results for `message` as a receiver at 127.0.0.1 sees it;
/// `None` when python3-authheaders is not installed (an error in CI).
fn receiver_view(dns: &DnsServer, message: &[u8], mail_from: &str) -> Option<String> {
    let have = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import authheaders"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-authheaders is required in CI (scripts/install-test-deps.sh)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(&file, message).unwrap();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(format!("{}/tests/support/receiver_view.py", relay::ROOT))
        .arg(format!("--dns={}", dns.addr()))
        .args(["--ip=127.0.0.1", "--helo=relay.test"])
        .arg(format!("--mail-from={mail_from}"))
        .arg(&file)
        .output()
        .expect("run receiver_view.py");
    assert!(
        out.status.success(),
        "receiver_view.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn tagged_sender_verifies_and_the_receiver_still_sees_spf_dkim_dmarc_pass() {
    let dns = dns();
    let sink = Sink::start(None).await;
    let keys = tempfile::tempdir().unwrap();
    let secrets = keys.path().join("batv.key");
    bounce_check::write_secrets(&secrets, &[bounce_check::SECRET]);
    let relay = tagging_relay(&dns, &sink, &secrets);

    let r = submit(&relay, "app@example.com", &["someone@example.net"], MESSAGE).await;
    assert_eq!(r.code, 250, "{r:?}");
    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "relay log:\n{}", relay.log());
    let m = &got[0];

    // MAIL FROM carries the draft's prvs tag, the local part as submitted.
    let sender = m.sender.clone();
    let (tag, rest) = sender
        .strip_prefix("prvs=")
        .and_then(|s| s.split_once('='))
        .unwrap_or_else(|| panic!("MAIL FROM not tagged: {sender}"));
    assert_eq!(rest, "app@example.com");
    assert!(
        tag.len() == 10
            && tag[..4].bytes().all(|b| b.is_ascii_digit())
            && tag[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "tag {tag}"
    );
    // The header is untouched: no Return-Path from the relay, From as sent.
    let text = String::from_utf8_lossy(&m.data);
    assert!(
        text.contains("\r\nFrom: Billing <app@example.com>\r\n"),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains("prvs="), "{text}");

    // bounce-check, reading the relay's own configuration file, accepts a bounce to it and
    // refuses one to the plain address.
    let (code, out) = bounce_check::one_shot(&relay.config, "", &sender);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("valid:"), "{out}");
    let (code, out) = bounce_check::one_shot(&relay.config, "<>", "app@example.com");
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("untagged:"), "{out}");
    let (code, _) = bounce_check::one_shot(&relay.config, "", &sender.to_ascii_uppercase());
    assert_eq!(
        code, 0,
        "a receiver that upper-cases the address hands back a valid tag"
    );

    // The receiver's view: SPF checks the MAIL FROM domain, unchanged by the tag, so SPF and
    // its DMARC alignment still pass; so do DKIM and DMARC.
    let resolver = dkim_relay::resolver::build(Some(&[dns.addr()])).unwrap();
    let parsed = mail_auth::AuthenticatedMessage::parse(&m.data).expect("parse");
    let dkim = resolver.verify_dkim(&parsed).await;
    assert!(
        dkim.iter()
            .all(|d| d.result() == &mail_auth::DkimResult::Pass)
            && !dkim.is_empty(),
        "{dkim:?}"
    );
    let spf = resolver
        .verify_spf(mail_auth::spf::verify::SpfParameters::helo_and_mail_from(
            "127.0.0.1".parse().unwrap(),
            "relay.test",
            "receiver.test",
            &sender,
        ))
        .await;
    assert_eq!(spf.result(), mail_auth::SpfResult::Pass, "{spf:?}");
    let dmarc = resolver
        .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
            &parsed,
            &dkim,
            "example.com",
            &spf,
        ))
        .await;
    assert_eq!(
        dmarc.spf_result(),
        &mail_auth::DmarcResult::Pass,
        "{dmarc:?}"
    );
    assert_eq!(
        dmarc.dkim_result(),
        &mail_auth::DmarcResult::Pass,
        "{dmarc:?}"
    );
    match receiver_view(&dns, &m.data, &sender) {
        Some(ar) => {
            eprintln!("receiver view: {ar}");
            for want in [
                "spf=pass",
                "dkim=pass",
                "dmarc=pass",
                "smtp.mailfrom=example.com",
            ] {
                assert!(ar.contains(want), "{want} missing from: {ar}");
            }
        }
        None => eprintln!("SKIP authheaders: python3-authheaders not installed"),
    }

    // Mail of a domain that is not tagged leaves as it came.
    let msg = b"From: o@other.test\r\nTo: someone@example.net\r\nSubject: x\r\n\r\nx\r\n";
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("other", relay::PASSWORD).await.code, 235);
    assert_eq!(
        c.send("o@other.test", &["someone@example.net"], msg)
            .await
            .code,
        250
    );
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].sender, "o@other.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relays_own_dsn_goes_to_the_untagged_sender_and_passes_a_bounce_check_that_trusts_the_relay(
) {
    let dns = dns();
    let sink = Sink::start(None).await;
    sink.script_rcpt("nobody@example.net", &["550 5.1.1 no such user"]);
    let keys = tempfile::tempdir().unwrap();
    let secrets = keys.path().join("batv.key");
    bounce_check::write_secrets(&secrets, &[bounce_check::SECRET]);
    let relay = tagging_relay(&dns, &sink, &secrets);

    let msg = b"From: app@example.com\r\nTo: nobody@example.net\r\nSubject: lost\r\n\r\nx\r\n";
    let r = submit(&relay, "app@example.com", &["nobody@example.net"], msg).await;
    assert_eq!(r.code, 250, "{r:?}");
    // The refused message bounces: the DSN (from <>) goes to the sender's domain, whose MX is
    // the same sink here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dsn = loop {
        if let Some(d) = sink.messages().into_iter().find(|m| m.sender.is_empty()) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no DSN; relay log:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The DSN goes to the address the sender submitted from, untagged (the relay knows it).
    assert_eq!(dsn.recipients, ["app@example.com"]);
    // The sender domain's bounce check refuses it from anywhere but the relay's own address,
    // which envelope_tagging.accept_bounces_from lists.
    let (code, out) = bounce_check::one_shot(&relay.config, "", "app@example.com");
    assert_eq!(code, 1, "{out}");
    let (code, out) =
        bounce_check::one_shot_from(&relay.config, "", "app@example.com", "127.0.0.1");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("trusted-source"), "{out}");
    let (code, out) =
        bounce_check::one_shot_from(&relay.config, "", "app@example.com", "192.0.2.1");
    assert_eq!(code, 1, "{out}");
    // The spool and the log keep the address as submitted.
    assert!(
        relay.log().contains("bounce queued for the sender"),
        "{}",
        relay.log()
    );
    assert!(!relay.log().contains("prvs="), "{}", relay.log());
}

#[test]
fn one_shot_verdicts_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = bounce_check::write_config(dir.path(), &["example.com"], "7d");
    let t = bounce_check::tagging(&[bounce_check::SECRET], &["example.com"], 7);
    let now = bounce_check::unix_now();
    let valid = t.tag("app@example.com", now).unwrap();
    let expired = t.tag("app@example.com", now - 30 * DAY).unwrap();
    let mut wrong = valid.clone().into_bytes();
    wrong[14] = if wrong[14] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let foreign = bounce_check::tagging(&["another-secret-0123456789"], &["example.com"], 7)
        .tag("app@example.com", now)
        .unwrap();

    for (sender, recipient, code, verdict) in [
        ("", valid.as_str(), 0, "valid"),
        ("<>", valid.as_str(), 0, "valid"),
        ("", "app@example.com", 1, "untagged"),
        ("", expired.as_str(), 1, "expired"),
        ("", wrong.as_str(), 1, "bad-tag"),
        ("", foreign.as_str(), 1, "bad-tag"),
        ("", "postmaster@example.com", 0, "not-checked"),
        ("", "app@example.org", 0, "not-checked"),
        ("someone@example.net", "app@example.com", 0, "not-checked"),
    ] {
        let (c, out) = bounce_check::one_shot(&config, sender, recipient);
        assert_eq!(c, code, "{sender:?} -> {recipient}: {out}");
        assert!(
            out.starts_with(&format!("{verdict}:")),
            "{recipient}: {out}"
        );
    }

    // Usage errors: 2. A configuration that cannot be used: 3, with the file and line.
    let usage = std::process::Command::new(bounce_check::BIN)
        .args(["bounce-check", "-c"])
        .arg(&config)
        .args(["--recipient", "a@example.com"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let secrets = dir.path().join("batv.key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (c, out) = bounce_check::one_shot(&config, "", "app@example.com");
    assert_eq!(c, 3, "{out}");
    assert!(
        out.contains("config.yaml:")
            && out.contains("envelope_tagging.secret_file")
            && out.contains("readable by every user"),
        "{out}"
    );
    let plain = dir.path().join("plain.yaml");
    std::fs::write(
        &plain,
        "hostname: relay.test\nlisteners:\n  - address: \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (c, out) = bounce_check::one_shot(&plain, "", "app@example.com");
    assert_eq!(c, 3, "{out}");
    assert!(out.contains("no envelope_tagging section"), "{out}");
}

fn metric(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    let (code, body) = relay::http_get(addr, "/metrics")?;
    assert_eq!(code, 200);
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn policy_daemon_answers_postfix_requests_reloads_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = bounce_check::write_config(dir.path(), &["example.com"], "7d");
    let port = relay::free_port();
    let tcp: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics: std::net::SocketAddr =
        format!("127.0.0.1:{}", relay::free_port()).parse().unwrap();
    let sock = dir.path().join("policy.sock");
    let args = vec![
        format!("--listen=inet:{tcp}"),
        format!("--listen=unix:{}", sock.display()),
        "--socket-mode=0660".to_string(),
        format!("--metrics={metrics}"),
    ];
    let mut daemon = Daemon::start(&config, &args, || {
        relay::http_get(metrics, "/healthz").is_some_and(|(c, _)| c == 200) && sock.exists()
    });
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
    }
    let t = bounce_check::tagging(&[bounce_check::SECRET], &["example.com"], 7);
    let now = bounce_check::unix_now();
    let valid = t.tag("app@example.com", now).unwrap();
    let expired = t.tag("app@example.com", now - 8 * DAY).unwrap();

    // Several requests on one connection, as Postfix sends them.
    let mut c = PolicyClient::tcp(tcp);
    let reject = c.ask("", "app@example.com").unwrap();
    assert!(reject.starts_with("action=REJECT 5.7.1 "), "{reject}");
    assert_eq!(c.ask("", &valid).as_deref(), Some("action=DUNNO"));
    let reject = c.ask("", &expired).unwrap();
    assert!(
        reject.starts_with("action=REJECT 5.7.1 ") && reject.contains("expired"),
        "{reject}"
    );
    assert_eq!(
        c.ask("someone@example.net", "app@example.com").as_deref(),
        Some("action=DUNNO")
    );
    assert_eq!(
        c.ask("", "user@example.org").as_deref(),
        Some("action=DUNNO")
    );
    // Two requests in one write (pipelined) get two answers in order.
    let two = format!(
        "{}{}",
        bounce_check::request("", "a@example.com"),
        bounce_check::request("", &valid)
    );
    c.send(two.as_bytes());
    assert!(c.answer().unwrap().starts_with("action=REJECT"));
    assert_eq!(c.answer().as_deref(), Some("action=DUNNO"));

    // The unix socket answers the same.
    let mut u = PolicyClient::unix(&sock);
    assert!(u
        .ask("", "app@example.com")
        .unwrap()
        .starts_with("action=REJECT 5.7.1"));
    assert_eq!(u.ask("", &valid).as_deref(), Some("action=DUNNO"));

    // A broken request gets no answer: the connection is closed (Postfix then applies its
    // default action and reconnects).
    let mut bad = PolicyClient::tcp(tcp);
    bad.send(
        format!(
            "request=smtpd_access_policy\nsender={}\n",
            "x".repeat(20_000)
        )
        .as_bytes(),
    );
    assert_eq!(bad.answer(), None);
    let mut bad = PolicyClient::tcp(tcp);
    bad.send(b"this is not an attribute\n\n");
    assert_eq!(bad.answer(), None);
    // ... and the daemon goes on serving the others.
    assert_eq!(c.ask("", &valid).as_deref(), Some("action=DUNNO"));

    let count = |v: &str| {
        metric(
            metrics,
            &format!("dkim_relay_bounce_checks_total{{verdict=\"{v}\"}}"),
        )
    };
    assert_eq!(count("untagged"), Some(3));
    assert_eq!(count("valid"), Some(4));
    assert_eq!(count("expired"), Some(1));
    assert_eq!(count("not_checked"), Some(2));
    assert_eq!(count("bad_tag"), Some(0));

    // Key change: a new secret alone (the old one dropped), then SIGHUP. The old tag is now
    // refused, a tag of the new secret accepted.
    let secrets = dir.path().join("batv.key");
    bounce_check::write_secrets(&secrets, &["the-next-secret-0123456789"]);
    daemon.signal("HUP");
    let reloads = |r: &str| {
        metric(
            metrics,
            &format!("dkim_relay_config_reloads_total{{result=\"{r}\"}}"),
        )
    };
    wait_until(|| reloads("success") == Some(1), &daemon);
    assert!(c
        .ask("", &valid)
        .unwrap()
        .starts_with("action=REJECT 5.7.1"));
    let fresh = bounce_check::tagging(&["the-next-secret-0123456789"], &["example.com"], 7)
        .tag("app@example.com", now)
        .unwrap();
    assert_eq!(c.ask("", &fresh).as_deref(), Some("action=DUNNO"));
    assert_eq!(count("bad_tag"), Some(1));

    // A broken configuration is refused on reload; the running one stays.
    std::fs::write(&config, "hostname: [oops\n").unwrap();
    daemon.signal("HUP");
    wait_until(|| reloads("failure") == Some(1), &daemon);
    assert_eq!(c.ask("", &fresh).as_deref(), Some("action=DUNNO"));

    // SIGTERM: a clean exit that removes its socket.
    drop(c);
    drop(u);
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exit after SIGTERM");
    assert!(status.success(), "{status}: {}", daemon.log_text());
    assert!(!sock.exists(), "socket removed");
    let log = daemon.log_text();
    assert!(log.contains("backscatter refused"), "{log}");
    assert!(log.contains("reload refused"), "{log}");
}

fn wait_until(cond: impl Fn() -> bool, daemon: &Daemon) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "condition not met; bounce-check log:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn policy_daemon_refuses_bad_arguments_and_a_taken_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = bounce_check::write_config(dir.path(), &["example.com"], "7d");
    let run = |args: &[&str]| {
        std::process::Command::new(bounce_check::BIN)
            .args(["bounce-check", "-c"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--listen", "inet:example.com:25"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&["--listen", "inet:127.0.0.1:1", "--socket-mode", "999"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(&["--listen", &format!("inet:{addr}")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on inet:{addr}")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_mode_shows_the_envelope_sender_as_it_would_leave() {
    let keys = tempfile::tempdir().unwrap();
    let secrets = keys.path().join("batv.key");
    bounce_check::write_secrets(&secrets, &[bounce_check::SECRET]);
    let relay = Relay::start(&format!(
        "delivery:\n  mode: directory\n  directory: outbox\n\
         envelope_tagging:\n  domains: [example.com]\n  secret_file: {}\n",
        secrets.display()
    ));
    let r = submit(&relay, "app@example.com", &["someone@example.net"], MESSAGE).await;
    assert_eq!(r.code, 250, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let eml = loop {
        let found = std::fs::read_dir(relay.outbox()).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "eml"))
        });
        if let Some(p) = found {
            break std::fs::read(p).unwrap();
        }
        assert!(Instant::now() < deadline, "no .eml; log:\n{}", relay.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = String::from_utf8_lossy(&eml)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let sender = first
        .strip_prefix("Return-Path: <")
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or_else(|| panic!("first line: {first}"));
    assert!(
        sender.starts_with("prvs=") && sender.ends_with("=app@example.com"),
        "{first}"
    );
    let (code, out) = bounce_check::one_shot(&relay.config, "", sender);
    assert_eq!(code, 0, "{out}");
    // Return-Path is not signed: the signatures still verify, with dkimpy and with the
    // README's `dkim-relay verify outbox/*.eml --key ...`.
    match relay::dkimpy_verify(&eml, &relay::dkim_records()) {
        Some((ok, out)) => assert!(ok, "dkimpy: {out}"),
        None => eprintln!("SKIP dkimpy: python3-dkim not installed"),
    }
    let file = keys.path().join("out.eml");
    std::fs::write(&file, &eml).unwrap();
    let verify = std::process::Command::new(bounce_check::BIN)
        .arg("verify")
        .arg(&file)
        .arg("--key")
        .arg(relay::rsa_key())
        .args(["--domain", "example.com", "--selector", relay::RSA_SELECTOR])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");

    // A message whose sender is not tagged is written exactly as it would be sent.
    let plain = b"From: o@other.test\r\nTo: someone@example.net\r\nSubject: x\r\n\r\nx\r\n";
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("other", relay::PASSWORD).await.code, 235);
    let r = c
        .send("o@other.test", &["someone@example.net"], plain)
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text.rsplit(' ').next().unwrap_or_default().to_string();
    let path = relay.outbox().join(format!("{id}.eml"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no {id}.eml; log:\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let eml = std::fs::read(&path).unwrap();
    assert!(
        eml.starts_with(b"DKIM-Signature:"),
        "{}",
        String::from_utf8_lossy(&eml)
    );
}

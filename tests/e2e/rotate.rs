//! Staged key rotation end to end: `rotate` writes a key and a pending state; the running relay
//! keeps signing with the configured selector until the test DNS server serves the new record,
//! then signs with the new selector (verified by mail-auth and dkimpy) while the old one is
//! reported as published but unused.

use crate::dns_server;
use crate::relay;
use crate::smtp_client;

use dns_server::DnsServer;
use smtp_client::Client;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
}

/// The s= of every DKIM-Signature of a message.
fn selectors(message: &str) -> Vec<String> {
    message
        .split("DKIM-Signature:")
        .skip(1)
        .filter_map(|sig| {
            sig.split(';')
                .map(str::trim)
                .find_map(|t| t.strip_prefix("s="))
                .map(str::to_string)
        })
        .collect()
}

async fn send_one(addr: std::net::SocketAddr, subject: &str) {
    let mut c = Client::connect(addr).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg =
        format!("From: app@example.com\r\nTo: a@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n");
    let r = c
        .send("app@example.com", &["a@example.net"], msg.as_bytes())
        .await;
    assert_eq!(r.code, 250, "{r:?}");
}

/// Wait for the .eml whose Subject is `subject`.
async fn wait_eml(outbox: &std::path::Path, subject: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        for e in std::fs::read_dir(outbox).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if text.contains(&format!("Subject: {subject}\r\n")) {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no message with subject {subject}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_switches_only_once_dns_serves_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::copy(relay::rsa_key(), keys.join("example.com.old.pem")).unwrap();
    let dns = DnsServer::start();
    dns.add_txt_str(
        "old._domainkey.example.com",
        &relay::dkim_record(&keys.join("example.com.old.pem")),
    );
    let port = relay::free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: relay.test\nspool_dir: {spool}\nlisteners:\n  - address: \"127.0.0.1:{port}\"\nclients:\n  - user: app\n    password_hash: \"{hash}\"\n    allow_from: [example.com]\ndkim:\n  domains:\n    example.com:\n      - selector: old\n        private_key: {key}\ndelivery:\n  mode: directory\n  directory: {outbox}\ndns:\n  nameservers: [\"{dns}\"]\n  check_interval: 1s\n",
            spool = dir.path().join("spool").display(),
            hash = relay::PASSWORD_HASH,
            key = keys.join("example.com.old.pem").display(),
            outbox = dir.path().join("outbox").display(),
            dns = dns.addr(),
        ),
    )
    .unwrap();

    let out = bin()
        .args(["rotate", "--domain", "example.com", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record_line = printed
        .lines()
        .find(|l| l.contains("._domainkey.example.com. IN TXT"))
        .expect("zone record printed")
        .to_string();
    let new_selector = record_line.split("._domainkey").next().unwrap().to_string();
    assert!(
        new_selector.starts_with('s') && new_selector != "old",
        "{new_selector}"
    );
    let key_file = keys.join(format!("example.com.{new_selector}.pem"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let status = String::from_utf8_lossy(
        &bin()
            .args(["rotate", "--status", "-c"])
            .arg(&config)
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        status.contains(&format!("{new_selector}\t(rotation)\tpending")),
        "{status}"
    );

    let log = std::fs::File::create(dir.path().join("relay.log")).unwrap();
    let mut child = bin()
        .args(["serve", "-c"])
        .arg(&config)
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }

    // DNS does not serve the new key yet: the configured selector signs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_one(addr, "before").await;
    let before = wait_eml(&dir.path().join("outbox"), "before").await;
    assert_eq!(selectors(&before), vec!["old".to_string()]);

    // Publish the printed record, strings as printed.
    let strings: Vec<Vec<u8>> = printed
        .split("IN TXT")
        .nth(1)
        .map(|rest| {
            dkim_relay::tools::keygen::parse_zone_strings(rest.split(')').next().unwrap_or(""))
                .into_iter()
                .map(String::into_bytes)
                .collect()
        })
        .unwrap();
    dns.add_txt(&format!("{new_selector}._domainkey.example.com"), strings);
    let start = Instant::now();
    loop {
        let s = String::from_utf8_lossy(
            &bin()
                .args(["rotate", "--status", "-c"])
                .arg(&config)
                .output()
                .unwrap()
                .stdout,
        )
        .to_string();
        if s.contains("signing since") {
            assert!(s.contains("old\t(config)\tpublished but unused"), "{s}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rotation never activated: {s}\n{}",
            std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_one(addr, "after").await;
    let after = wait_eml(&dir.path().join("outbox"), "after").await;
    assert_eq!(selectors(&after), vec![new_selector.clone()]);

    let resolver = dkim_relay::resolver::build(Some(&[dns.addr()])).unwrap();
    let parsed = mail_auth::AuthenticatedMessage::parse(after.as_bytes()).unwrap();
    let results = resolver.verify_dkim(&parsed).await;
    assert!(
        results
            .iter()
            .all(|r| r.result() == &mail_auth::DkimResult::Pass),
        "{results:?}"
    );
    let record = relay::dkim_record(&key_file);
    if let Some((ok, text)) = relay::dkimpy_verify(
        after.as_bytes(),
        &[(format!("{new_selector}._domainkey.example.com"), record)],
    ) {
        assert!(ok, "{text}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

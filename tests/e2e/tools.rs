//! `keygen`, `dns-check` and `verify` as an operator runs them: the real binary, a temp config,
//! and a real DNS server on loopback serving exactly what keygen printed (or a broken variant of
//! it). Signatures are also checked by dkimpy, an independent verifier.

use crate::dns_server;
use crate::relay::{self, run_cli, CliOut};

use dns_server::DnsServer;
use mail_auth::dkim::DkimSigner;
use mail_auth::headers::HeaderWriter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const DOMAIN: &str = "example.com";
const RELAY_IP: &str = "203.0.113.7";
/// A key made by `keygen` and the record it printed.
struct Key {
    selector: String,
    pem: PathBuf,
    /// Owner name of the record, without the final dot.
    name: String,
    /// The quoted strings of the zone-file record, in order.
    strings: Vec<String>,
}

impl Key {
    fn value(&self) -> String {
        self.strings.concat()
    }
}

fn keygen(dir: &Path, selector: &str, algorithm: &str) -> Key {
    let out = run_cli(&[
        "keygen",
        "--domain",
        DOMAIN,
        "--selector",
        selector,
        "--algorithm",
        algorithm,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "keygen failed: {}", out.stderr);
    // The zone-file part: every line before the "; DNS panel" comment.
    let record: String = out
        .stdout
        .lines()
        .take_while(|l| !l.starts_with(';'))
        .collect::<Vec<_>>()
        .join("\n");
    let name = record
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    assert!(record.contains(" IN TXT ("), "{record}");
    let strings: Vec<String> = record
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    for s in &strings {
        assert!(s.len() <= 255, "string over 255 bytes: {s}");
    }
    // The panel hint carries the same value, unsplit.
    let hint = out.stdout.lines().find(|l| l.starts_with(';')).unwrap();
    assert!(hint.ends_with(&strings.concat()), "{hint}");
    Key {
        selector: selector.to_string(),
        pem: dir.join(format!("{DOMAIN}.{selector}.pem")),
        name,
        strings,
    }
}

/// Serve a key's record exactly as printed (one record, the printed strings).
fn publish(dns: &DnsServer, key: &Key) {
    dns.add_txt(
        &key.name,
        key.strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
    );
}

fn publish_spf_dmarc(dns: &DnsServer) {
    dns.add_txt_str(DOMAIN, &format!("v=spf1 ip4:{RELAY_IP} -all"));
    dns.add_txt_str(DOMAIN, "google-site-verification=abc");
    dns.add_txt_str(
        &format!("_dmarc.{DOMAIN}"),
        &format!("v=DMARC1; p=reject; rua=mailto:dmarc@{DOMAIN}"),
    );
}

fn write_config(dir: &Path, dns: &DnsServer, keys: &[&Key], public: Option<&str>) -> PathBuf {
    let mut yaml = format!(
        "hostname: relay.{DOMAIN}\nlisteners:\n  - address: \"127.0.0.1:2525\"\ndns:\n  nameservers: [\"{}\"]\n",
        dns.addr()
    );
    if let Some(p) = public {
        yaml.push_str(&format!("public_addresses: [\"{p}\"]\n"));
    }
    yaml.push_str(&format!("dkim:\n  domains:\n    {DOMAIN}:\n"));
    for k in keys {
        yaml.push_str(&format!(
            "      - selector: {}\n        private_key: {}\n",
            k.selector,
            k.pem.display()
        ));
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn dns_check(config: &Path) -> CliOut {
    let out = run_cli(&["dns-check", "-c", config.to_str().unwrap()]);
    // Shown with --nocapture: what an operator would read.
    eprintln!("$ dkim-relay dns-check (exit {})\n{}", out.code, out.stdout);
    out
}

/// The lines of a report with this status and check label.
fn lines<'a>(out: &'a CliOut, status: &str, check: &str) -> Vec<&'a str> {
    let prefix = format!("{status:<4} {DOMAIN} {check}:");
    out.stdout
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

/// A line of a report with this status and check label says `text`.
#[track_caller]
fn assert_says(out: &CliOut, status: &str, check: &str, text: &str) {
    assert!(
        lines(out, status, check).iter().any(|l| l.contains(text)),
        "no '{status} {check}' line says {text:?}:\n{}",
        out.stdout
    );
}

fn sign(message: &[u8], keys: &[&Key]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in keys {
        let key = dkim_relay::dkim::keys::PrivateKey::load(&k.pem).unwrap();
        let sig = DkimSigner::from_key(key.signing_key)
            .domain(DOMAIN)
            .selector(&k.selector)
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(message)
            .unwrap();
        out.extend_from_slice(sig.to_header().as_bytes());
    }
    out.extend_from_slice(message);
    out
}

const MESSAGE: &[u8] = b"From: Billing <billing@example.com>\r\n\
To: customer@example.org\r\n\
Subject: Your invoice\r\n\
Date: Mon, 23 Nov 2026 06:00:00 +0000\r\n\
Message-ID: <inv-1@example.com>\r\n\
\r\n\
Hello,\r\n\
\r\n\
your invoice is attached.   \r\n\
\r\n\
\r\n";

#[test]
fn keygen_record_passes_dns_check_and_dkimpy_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let rsa = keygen(dir.path(), "r2026", "rsa2048");
    let ed = keygen(dir.path(), "e2026", "ed25519");
    assert!(
        rsa.strings.len() >= 3,
        "RSA p= must be split: {:?}",
        rsa.strings
    );
    assert_eq!(rsa.strings[0], "v=DKIM1; k=rsa; ");
    assert!(ed.value().starts_with("v=DKIM1; k=ed25519; p="));
    publish(&dns, &rsa);
    publish(&dns, &ed);
    publish_spf_dmarc(&dns);
    let config = write_config(dir.path(), &dns, &[&rsa, &ed], Some(RELAY_IP));

    let out = dns_check(&config);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(lines(&out, "ok", "dkim:r2026").len(), 1, "{}", out.stdout);
    assert_eq!(lines(&out, "ok", "dkim:e2026").len(), 1, "{}", out.stdout);
    assert_says(&out, "ok", "spf", "203.0.113.7 is authorized");
    assert_says(&out, "ok", "spf", "uses 0 of 10 DNS lookups");
    assert_says(&out, "ok", "dmarc", "p=reject");
    assert!(!out.stdout.contains("FAIL ") && !out.stdout.contains("warn "));

    // The JSON form says the same.
    let json = run_cli(&[
        "dns-check",
        "-c",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(json.code, 0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let checks: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"dkim:r2026") && checks.contains(&"dmarc"));

    // A message dual-signed with both new keys verifies with our verify (keys from the DNS
    // server) and with dkimpy (keys from the printed records).
    let signed = sign(MESSAGE, &[&rsa, &ed]);
    let msg = dir.path().join("signed.eml");
    std::fs::write(&msg, &signed).unwrap();
    let v = run_cli(&[
        "verify",
        "-c",
        config.to_str().unwrap(),
        msg.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert_eq!(
        v.stdout.lines().filter(|l| l.starts_with("pass ")).count(),
        2
    );

    let records: Vec<(String, String)> = [&rsa, &ed]
        .iter()
        .map(|k| (k.name.clone(), k.value()))
        .collect();
    // None only outside CI without python3-dkim (relay::dkimpy_verify fails the test in CI).
    if let Some((ok, out)) = relay::dkimpy_verify(&signed, &records) {
        assert!(ok, "dkimpy: {out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("pass ")).count(), 2);
        // And dkimpy is not a yes-man: an altered body fails there too.
        let mut altered = signed.clone();
        altered.extend_from_slice(b"P.S. added later\r\n");
        let (ok, out) = relay::dkimpy_verify(&altered, &records).expect("dkimpy ran once");
        assert!(!ok, "dkimpy passed an altered body: {out}");
    }
}

#[test]
fn dkim_record_with_another_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let ours = keygen(dir.path(), "s1", "rsa2048");
    let other = keygen(dir.path(), "s2", "rsa2048");
    // The selector s1 serves s2's key (a stale record after a key was regenerated).
    dns.add_txt(
        &ours.name,
        other
            .strings
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
    );
    publish_spf_dmarc(&dns);
    let config = write_config(dir.path(), &dns, &[&ours], Some(RELAY_IP));
    let out = dns_check(&config);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "dkim:s1");
    assert_eq!(fail.len(), 1, "{}", out.stdout);
    assert!(
        fail[0].contains("publishes a different key than"),
        "{}",
        fail[0]
    );
    // A correctly split record is not taken for a cut one.
    assert!(!fail[0].contains("255 bytes"), "{}", fail[0]);
    // It says what to publish instead.
    assert!(fail[0].contains(&ours.strings[1]), "{}", fail[0]);
    // Only the DKIM check fails.
    assert!(lines(&out, "FAIL", "spf").is_empty() && lines(&out, "FAIL", "dmarc").is_empty());
}

#[test]
fn record_split_wrongly_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "s1", "rsa2048");
    let config_for = |dns: &DnsServer| write_config(dir.path(), dns, &[&key], Some(RELAY_IP));

    // 1. The whole value as one string of more than 255 bytes: DNS cannot carry it; the test
    //    server serves it cut at 255 bytes, as a panel that does not split long values does.
    let dns = DnsServer::start();
    assert!(key.value().len() > 255);
    dns.add_txt(&key.name, vec![key.value().into_bytes()]);
    publish_spf_dmarc(&dns);
    let out = dns_check(&config_for(&dns));
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "dkim:s1");
    assert_eq!(fail.len(), 1, "{}", out.stdout);
    assert!(fail[0].contains("exactly 255 bytes"), "{}", fail[0]);
    assert!(fail[0].contains("several quoted strings"), "{}", fail[0]);
    drop(dns);

    // 2. The zone-file form pasted into a panel that takes the bare value: quotes in the data.
    let dns = DnsServer::start();
    let pasted = format!("\"{}\"", key.strings.join("\" \""));
    dns.add_txt_str(&key.name, &pasted);
    publish_spf_dmarc(&dns);
    let out = dns_check(&config_for(&dns));
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "dkim:s1");
    assert!(fail[0].contains("quote characters"), "{}", fail[0]);
}

#[test]
fn two_dkim_records_fail() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen(dir.path(), "s1", "rsa2048");
    let old = keygen(dir.path(), "old", "ed25519");
    publish(&dns, &key);
    // A second record at the same name (the old key never removed).
    dns.add_txt_str(&key.name, &old.value());
    publish_spf_dmarc(&dns);
    let config = write_config(dir.path(), &dns, &[&key], Some(RELAY_IP));
    let out = dns_check(&config);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "dkim:s1");
    assert!(fail[0].contains("2 DKIM records"), "{}", out.stdout);
}

#[test]
fn missing_dmarc_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen(dir.path(), "s1", "ed25519");
    publish(&dns, &key);
    dns.add_txt_str(DOMAIN, &format!("v=spf1 ip4:{RELAY_IP} -all"));
    let config = write_config(dir.path(), &dns, &[&key], Some(RELAY_IP));
    let out = dns_check(&config);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "dmarc");
    assert!(
        fail[0].contains("no DMARC record at _dmarc.example.com"),
        "{}",
        out.stdout
    );
    assert_eq!(lines(&out, "ok", "dkim:s1").len(), 1, "{}", out.stdout);

    // p=none is a warning, not a failure: exit 0, and it says what p=reject needs.
    dns.add_txt_str(
        &format!("_dmarc.{DOMAIN}"),
        "v=DMARC1; p=none; rua=mailto:d@example.com",
    );
    let out = dns_check(&config);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let warn = lines(&out, "warn", "dmarc");
    assert!(
        warn[0].contains("p=none") && warn[0].contains("p=reject needs"),
        "{}",
        out.stdout
    );
}

#[test]
fn spf_not_covering_public_addresses_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen(dir.path(), "s1", "ed25519");
    publish(&dns, &key);
    dns.add_txt_str(DOMAIN, "v=spf1 ip4:198.51.100.0/24 ~all");
    dns.add_txt_str(&format!("_dmarc.{DOMAIN}"), "v=DMARC1; p=reject");
    let config = write_config(dir.path(), &dns, &[&key], Some(RELAY_IP));
    let out = dns_check(&config);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let fail = lines(&out, "FAIL", "spf");
    assert_eq!(fail.len(), 1, "{}", out.stdout);
    assert!(
        fail[0].contains("203.0.113.7 is not authorized (softfail)")
            && fail[0].contains("add ip4:203.0.113.7"),
        "{}",
        fail[0]
    );
    assert_says(&out, "warn", "spf", "~all");

    // No SPF at all.
    dns.remove(DOMAIN);
    let out = dns_check(&config);
    assert_eq!(out.code, 1);
    assert_says(&out, "FAIL", "spf", "no SPF record at example.com");

    // Two SPF records.
    dns.add_txt_str(DOMAIN, &format!("v=spf1 ip4:{RELAY_IP} -all"));
    dns.add_txt_str(DOMAIN, "v=spf1 include:_spf.provider.example -all");
    let out = dns_check(&config);
    assert_eq!(out.code, 1);
    assert_says(&out, "FAIL", "spf", "2 SPF records");
}

#[test]
fn spf_lookup_limit_and_default_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen(dir.path(), "s1", "ed25519");
    publish(&dns, &key);
    dns.add_txt_str(&format!("_dmarc.{DOMAIN}"), "v=DMARC1; p=reject");
    // No public_addresses: the relay's address is what its hostname resolves to.
    dns.add_a(
        &format!("relay.{DOMAIN}"),
        RELAY_IP.parse::<Ipv4Addr>().unwrap(),
    );
    // A chain of includes: 1 + 11 lookups, over the limit of 10.
    let mut top = String::from("v=spf1");
    for i in 0..11 {
        top.push_str(&format!(" include:_spf{i}.{DOMAIN}"));
        dns.add_txt_str(
            &format!("_spf{i}.{DOMAIN}"),
            &format!("v=spf1 ip4:198.51.100.{i} ?all"),
        );
    }
    top.push_str(&format!(" ip4:{RELAY_IP} -all"));
    dns.add_txt_str(DOMAIN, &top);
    let config = write_config(dir.path(), &dns, &[&key], None);
    let out = dns_check(&config);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_says(
        &out,
        "FAIL",
        "spf",
        "needs 11 DNS lookups, over the limit of 10",
    );

    // Within the limit, the hostname's address passes.
    dns.remove(DOMAIN);
    dns.add_txt_str(
        DOMAIN,
        &format!("v=spf1 a:relay.{DOMAIN} include:_spf0.{DOMAIN} -all"),
    );
    let out = dns_check(&config);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_says(&out, "ok", "spf", "uses 2 of 10");
    assert_says(&out, "ok", "spf", "203.0.113.7 is authorized");
}

#[test]
fn dkim_missing_and_testing_flag() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen(dir.path(), "s1", "rsa3072");
    publish_spf_dmarc(&dns);
    let config = write_config(dir.path(), &dns, &[&key], Some(RELAY_IP));
    let out = dns_check(&config);
    assert_eq!(out.code, 1);
    let fail = lines(&out, "FAIL", "dkim:s1");
    assert!(
        fail[0].contains("no TXT record at s1._domainkey.example.com: publish"),
        "{}",
        out.stdout
    );

    // t=y: the key matches, but it is a warning.
    let mut strings = key.strings.clone();
    strings[0] = "v=DKIM1; k=rsa; t=y; ".into();
    dns.add_txt(
        &key.name,
        strings.iter().map(|s| s.as_bytes().to_vec()).collect(),
    );
    let out = dns_check(&config);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_says(&out, "warn", "dkim:s1", "t=y");
}

#[test]
fn verify_explains_failures() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "s1", "rsa2048");
    let signed = sign(MESSAGE, &[&key]);
    let msg = dir.path().join("m.eml");
    let pem = key.pem.to_str().unwrap();
    let verify = |bytes: &[u8]| {
        std::fs::write(&msg, bytes).unwrap();
        run_cli(&[
            "verify",
            "--key",
            pem,
            "--domain",
            DOMAIN,
            "--selector",
            "s1",
            msg.to_str().unwrap(),
        ])
    };

    let out = verify(&signed);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out
        .stdout
        .starts_with("pass d=example.com s=s1 a=rsa-sha256"));

    // The body altered after signing.
    let mut altered = signed.clone();
    let n = altered.len();
    altered[n - 10] = b'X';
    let out = verify(&altered);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("body hash mismatch"), "{}", out.stdout);

    // A signed header changed.
    let text = String::from_utf8(signed.clone()).unwrap();
    let out = verify(text.replace("Your invoice", "Your lnvoice").as_bytes());
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("signature does not verify")
            && out.stdout.contains("header field was changed"),
        "{}",
        out.stdout
    );

    // The same message with LF line ends (as saved by many tools) still verifies.
    let out = verify(text.replace("\r\n", "\n").as_bytes());
    assert_eq!(out.code, 0, "{}", out.stdout);

    // No signature at all.
    let out = verify(MESSAGE);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no DKIM-Signature"), "{}", out.stderr);
}

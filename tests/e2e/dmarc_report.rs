//! `dkim-relay dmarc-report` as an operator runs it: the real binary on hand-written reports in
//! the formats Google, Microsoft, Yahoo and RFC 9990 (namespaced) reporters send, as plain XML,
//! gzip and zip (tests/data/dmarc; the compressed ones are made by make-fixtures.py from
//! sources/), with a temp config whose `public_addresses` names the relay. Also the readers and
//! the judgement through the library, and hostile input: truncated gzip, decompression bombs,
//! non-XML, absurd counts.

use crate::dmarc;
use crate::dns_server;

use dkim_relay::tools::dmarc_report::{
    analyze, load_bytes, load_file, parse_report, RelayIdentity,
};
use dmarc::*;
use dns_server::DnsServer;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn text_report_tells_one_domain_ready_and_the_other_not() {
    let (_dir, out) = run_with_config(&[], &all_fixtures());
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "");
    let s = &out.stdout;
    assert!(s.starts_with(
        "This relay: addresses 203.0.113.7; signs example.com (s=dev2026r, s=dev2026e), example.org (s=org1)\n"
    ), "{s}");
    let (com, org) = s.split_once("== example.org ==").expect("both domains");
    assert!(com.contains("== example.com =="), "{s}");
    assert!(
        com.contains("212 messages from 4 sources; 150 pass DMARC (70.8%)"),
        "{com}"
    );
    // The table is sorted by volume: relay first, the failing newsletter service second.
    let relay_row = com.find("  203.0.113.7  ").expect("relay row");
    let esp_row = com.find("  198.51.100.25  ").expect("esp row");
    let forger_row = com.find("  192.0.2.66  ").expect("forger row");
    assert!(relay_row < esp_row && esp_row < forger_row, "{com}");
    assert!(
        com.contains("150       150       150       150  this relay"),
        "{com}"
    );
    assert!(com.contains(
        "Verdict: NOT READY for p=reject: 1 source that looks legitimate fails DMARC; 50 of 212 messages would be rejected."
    ), "{com}");
    assert!(com.contains("  - 198.51.100.25 (50 messages failing): authenticates as bounces.esp-mailer.net, esp-mailer.net, not as example.com"), "{com}");
    assert!(
        com.contains("the relay's signature no longer verifies after forwarding"),
        "{com}"
    );
    assert!(
        com.contains("9 messages from 1 source that authenticates as nothing"),
        "{com}"
    );
    assert!(
        org.contains("73 messages from 4 sources; 67 pass DMARC"),
        "{org}"
    );
    assert!(org.contains(
        "Verdict: READY for p=reject on this evidence: every source that fails DMARC looks illegitimate (6 of 73 messages would be rejected)."
    ), "{org}");
    assert!(
        org.contains("1 source passes DMARC without the relay (198.51.100.80)"),
        "{org}"
    );
    assert!(
        org.contains(
            "Evidence, not proof: 2 reports from Yahoo, reporter.example for 2026-01-01 (UTC)"
        ),
        "{org}"
    );
}

#[test]
fn json_report_has_the_counts_and_the_verdicts() {
    let (_dir, out) = run_with_config(&["--format", "json"], &all_fixtures());
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let v = json(&out);
    assert_eq!(v["reports_read"], 4);
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(v["relay"]["addresses"], serde_json::json!([RELAY_IP]));
    assert_eq!(
        v["relay"]["signing"]["example.com"],
        serde_json::json!(["dev2026r", "dev2026e"])
    );
    let domains = v["domains"].as_array().expect("domains");
    assert_eq!(domains.len(), 2);
    let com = &domains[0];
    assert_eq!(com["domain"], "example.com");
    assert_eq!(com["policy"]["p"], "none");
    assert_eq!(com["reports"], 2);
    assert_eq!(
        com["reporters"],
        serde_json::json!(["Outlook.com", "google.com"])
    );
    assert_eq!(com["first_day"], "2026-01-01");
    assert_eq!(com["messages"], 212);
    assert_eq!(com["dmarc_pass"], 150);
    assert_eq!(com["relay_signs_for_domain"], true);
    assert_eq!(com["verdict"]["ready"], false);
    assert_eq!(com["verdict"]["actions"].as_array().map(Vec::len), Some(1));
    let sources = com["sources"].as_array().expect("sources");
    let summary: Vec<(String, u64, String)> = sources
        .iter()
        .map(|s| {
            (
                s["ip"].as_str().unwrap_or_default().to_string(),
                s["messages"].as_u64().unwrap_or_default(),
                s["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("203.0.113.7".to_string(), 150, "this_relay".to_string()),
            (
                "198.51.100.25".to_string(),
                50,
                "legitimate_failing".to_string()
            ),
            ("192.0.2.66".to_string(), 9, "unauthenticated".to_string()),
            ("209.85.220.41".to_string(), 3, "forwarded".to_string()),
        ]
    );
    let relay = &sources[0];
    assert_eq!(relay["this_relay"], true);
    assert_eq!(relay["dmarc_pass"], 150);
    assert_eq!(relay["dkim_aligned_pass"], 150);
    assert_eq!(relay["spf_aligned_pass"], 150);
    assert_eq!(relay["relay_signed"], 150);
    assert_eq!(relay["dispositions"], serde_json::json!({"none": 150}));
    assert_eq!(relay["header_from"], serde_json::json!(["example.com"]));
    assert_eq!(
        relay["dkim"],
        serde_json::json!([
            {"domain": "example.com", "selector": "dev2026e", "pass": 120, "fail": 0, "relay": true},
            {"domain": "example.com", "selector": "dev2026r", "pass": 150, "fail": 0, "relay": true},
        ])
    );
    assert_eq!(
        sources[1]["spf"],
        serde_json::json!([{"domain": "bounces.esp-mailer.net", "pass": 50, "fail": 0}])
    );
    let org = &domains[1];
    assert_eq!(org["domain"], "example.org");
    assert_eq!(org["verdict"]["ready"], true);
    assert_eq!(org["messages"], 73);
    // RFC 9990's "pass" disposition and the namespaced report's records are counted.
    assert_eq!(
        org["sources"][0]["dispositions"],
        serde_json::json!({"none": 50, "pass": 12})
    );
    assert_eq!(org["sources"][1]["kind"], "authorized");
    assert_eq!(org["sources"][3]["ip"], "2001:db8::99");
}

#[test]
fn readers_handle_plain_gzip_zip_and_namespaced_reports() {
    let plain = load_file(&fixture(GOOGLE));
    assert_eq!(plain.len(), 1);
    let r = plain[0].report.as_ref().expect("google report");
    assert_eq!((r.org_name.as_str(), r.records.len()), ("google.com", 3));
    assert_eq!(r.records[0].dkim.len(), 2);

    let gz = load_file(&fixture(OUTLOOK_GZ));
    let r = gz[0].report.as_ref().expect("outlook report");
    assert_eq!((r.org_name.as_str(), r.records.len()), ("Outlook.com", 3));
    assert_eq!(r.records[1].envelope_from, "bounces.esp-mailer.net");

    let zip = load_file(&fixture(ZIP));
    let labels: Vec<&str> = zip.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels[0].ends_with("(yahoo.com!example.org!1767225600!1767311999.xml)"));
    let namespaced = zip[1].report.as_ref().expect("namespaced report");
    assert_eq!(namespaced.org_name, "reporter.example");
    assert_eq!(namespaced.policy.domain, "example.org");
    assert_eq!(namespaced.records.len(), 3);
    assert_eq!(namespaced.records[2].source_ip.to_string(), "2001:db8::99");
    // The empty <reason> of the third record is no reason.
    assert!(namespaced.records[2].reasons.is_empty());

    // A prefixed namespace reads the same, also with no XML declaration before it.
    let xml = source_fixture("yahoo.com!example.org!1767225600!1767311999.xml")
        .replace("<?xml version=\"1.0\"?>\n", "")
        .replace(
            "<feedback>",
            "<d:feedback xmlns:d=\"urn:ietf:params:xml:ns:dmarc-2.0\">",
        )
        .replace("</feedback>", "</d:feedback>")
        .replace("<record>", "<d:record>")
        .replace("</record>", "</d:record>");
    assert!(xml.starts_with("<d:feedback"), "{xml}");
    let loaded = load_bytes("prefixed.xml", xml.as_bytes());
    let r = loaded[0].report.as_ref().expect("prefixed report");
    assert_eq!(r.records.len(), 2);
}

#[test]
fn the_same_report_twice_is_counted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extracted = dir
        .path()
        .join("protection.outlook.com!example.com!1767225600!1767312000.xml");
    std::fs::write(
        &extracted,
        source_fixture("protection.outlook.com!example.com!1767225600!1767312000.xml"),
    )
    .expect("write");
    let files = vec![
        fixture(OUTLOOK_GZ).display().to_string(),
        extracted.display().to_string(),
    ];
    let (_cfg, out) = run_with_config(&["--format", "json"], &files);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("already read from"), "{}", out.stderr);
    assert!(out.stderr.contains("counted once"), "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["reports_read"], 1);
    assert_eq!(v["domains"][0]["messages"], 43);
}

#[test]
fn without_a_config_nothing_is_this_relay() {
    let out = Command::new(BIN)
        .args(["dmarc-report", &fixture(GOOGLE).display().to_string()])
        .env("DKIM_RELAY_CONFIG", "/nonexistent/dkim-relay.yaml")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.starts_with("This relay: addresses unknown; signs nothing\n  note: no usable configuration (/nonexistent/dkim-relay.yaml: cannot read"), "{stdout}");
    assert!(
        stdout.contains("This relay has no DKIM key for example.com"),
        "{stdout}"
    );
    assert!(!stdout.contains("  this relay\n"), "{stdout}");

    // An explicit -c that cannot be read is an error, before any report is read.
    let out = run(&[
        "-c",
        "/nonexistent/c.yaml",
        &fixture(GOOGLE).display().to_string(),
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("/nonexistent/c.yaml"), "{}", out.stderr);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// A zip archive with deflated entries, written by hand (APPNOTE 4.3: local headers, central
/// directory, end record), so that tests can make archives the `zip` crate (read-only here)
/// cannot.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("deflate");
        let packed = enc.finish().expect("deflate");
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend(20u16.to_le_bytes()); // version needed
            v.extend(0u16.to_le_bytes()); // flags
            v.extend(8u16.to_le_bytes()); // deflate
            v.extend(0u16.to_le_bytes()); // time
            v.extend(0x5c21u16.to_le_bytes()); // date 2026-01-01
            v.extend(crc.sum().to_le_bytes());
            v.extend((packed.len() as u32).to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes()); // extra length
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(&packed);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend([0u8; 8]); // comment length, disk, internal and external attributes
        central.extend([0u8; 2]);
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

#[test]
fn the_hand_made_zip_is_read_like_a_real_one() {
    let yahoo = source_fixture("yahoo.com!example.org!1767225600!1767311999.xml");
    let google = std::fs::read_to_string(fixture(GOOGLE)).expect("fixture");
    let zip = zip_of(&[("a.xml", yahoo.as_bytes()), ("b.xml", google.as_bytes())]);
    let loaded = load_bytes("two.zip", &zip);
    let orgs: Vec<String> = loaded
        .iter()
        .map(|l| l.report.as_ref().expect("report").org_name.clone())
        .collect();
    assert_eq!(orgs, vec!["Yahoo", "google.com"]);
    assert_eq!(loaded[1].label, "two.zip (b.xml)");
}

#[test]
fn broken_and_hostile_files_are_named_and_the_rest_still_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p.display().to_string()
    };
    let gz = std::fs::read(fixture(OUTLOOK_GZ)).expect("fixture");
    let truncated = write("truncated.xml.gz", &gz[..gz.len() / 2]);
    let zeros = vec![0u8; 101 * 1024 * 1024];
    let gzip_bomb = write("bomb.xml.gz", &gzip(&zeros));
    let zip_bomb = write("bomb.zip", &zip_of(&[("bomb.xml", &zeros)]));
    drop(zeros);
    let text = write("notes.txt", b"this is not a report\n");
    let html = write("page.xml", b"<html><body>Report</body></html>");
    let google = std::fs::read_to_string(fixture(GOOGLE)).expect("fixture");
    let counts = write(
        "counts.xml",
        google
            .replace("<count>9</count>", "<count>99999999999999999999999</count>")
            .as_bytes(),
    );
    let not_zip = write("fake.zip", b"PK\x03\x04garbage");
    let email = write(
        "report.eml",
        b"Return-Path: <noreply-dmarc-support@google.com>\r\nSubject: Report domain: example.com\r\n\r\n",
    );
    let files = vec![
        truncated,
        gzip_bomb,
        zip_bomb,
        text,
        html,
        counts,
        not_zip,
        email,
        dir.path().join("missing.xml").display().to_string(),
        fixture(ZIP).display().to_string(),
    ];
    let (_cfg, out) = run_with_config(&[], &files);
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let e = &out.stderr;
    for want in [
        "truncated.xml.gz: corrupt or truncated gzip data",
        "bomb.xml.gz: decompresses to more than 100 MiB: refused",
        "bomb.zip (bomb.xml): decompresses to more than 100 MiB: refused",
        "notes.txt: not a DMARC aggregate report: no <feedback> element",
        "page.xml: not a DMARC aggregate report: no <feedback> element in it (its top-level element is <html>)",
        "counts.xml: record 3: <count> 99999999999999999999999 is too large to be a number of messages (record left out)",
        "fake.zip: not a readable zip archive",
        "missing.xml: cannot read:",
        "dmarc-report: 8 problems above",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    // An e-mail without a report attachment is skipped and counted, not an error.
    assert!(!e.contains("report.eml"), "{e}");
    assert!(
        out.stdout
            .contains("Read: 3 reports (from 1 e-mail message; 1 without a report skipped)\n"),
        "{}",
        out.stdout
    );
    // The readable files are still reported: the zip's domain, and counts.xml's other records.
    assert!(out.stdout.contains("== example.org =="), "{}", out.stdout);
    assert!(
        out.stdout.contains("160 messages from 2 sources"),
        "{}",
        out.stdout
    );
}

#[test]
fn counts_that_add_up_past_u64_saturate() {
    let google = std::fs::read_to_string(fixture(GOOGLE)).expect("fixture");
    let max = u64::MAX.to_string();
    let xml = google
        .replace("<count>120</count>", &format!("<count>{max}</count>"))
        .replace("<count>40</count>", &format!("<count>{max}</count>"));
    let report = parse_report(&xml).expect("report");
    let domains = analyze(&[report.clone(), report], &RelayIdentity::default());
    assert_eq!(domains[0].messages, u64::MAX);
    assert_eq!(domains[0].sources[0].messages, u64::MAX);
}

#[test]
fn without_public_addresses_the_relay_is_what_hostname_resolves_to() {
    let dns = DnsServer::start();
    dns.add_a("relay.test", RELAY_IP.parse().expect("ip"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let text = std::fs::read_to_string(&cfg).expect("config");
    let text = text.replace(
        &format!("public_addresses: [\"{RELAY_IP}\"]\n"),
        &format!("dns:\n  nameservers: [\"{}\"]\n", dns.addr()),
    );
    std::fs::write(&cfg, text).expect("config");
    let args = ["-c", cfg.to_str().expect("utf-8"), "--format", "json"];
    let google = fixture(GOOGLE).display().to_string();
    let out = run(&[&args[..], &[google.as_str()]].concat());
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let v = json(&out);
    assert_eq!(v["relay"]["addresses"], serde_json::json!([RELAY_IP]));
    assert_eq!(v["domains"][0]["sources"][0]["kind"], "this_relay");

    // Not resolvable: said once at the top; the relay's signatures still mark forwarded mail.
    dns.remove("relay.test");
    let out = run(&[&args[..2], &[google.as_str()]].concat());
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .starts_with("This relay: addresses unknown; signs example.com"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("note: public_addresses is not set and hostname relay.test does not resolve"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("No source in these reports is this relay's address"),
        "{}",
        out.stdout
    );
}

#[test]
fn help_explains_the_command() {
    let out = Command::new(BIN)
        .args(["dmarc-report", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for want in [
        ".xml.gz",
        ".zip",
        "p=reject",
        "public_addresses",
        "Exit status",
        "--format",
        "--imap",
        "--password-file",
        "--ca-file",
        "--since",
        "self-contained page",
        "Maildir",
    ] {
        assert!(help.contains(want), "missing {want:?}:\n{help}");
    }
    // FILE is required.
    let out = Command::new(BIN).arg("dmarc-report").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

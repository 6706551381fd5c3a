//! `dkim-relay dmarc-report` reading reports as they arrive: the e-mails receivers send to the
//! `rua` address (Google's zip, Microsoft's gzip as application/octet-stream, Yahoo's gzip, a
//! base64 report inside multipart/mixed inside multipart/alternative, a forwarded copy in
//! quoted-printable) and ordinary mail, as a Maildir, an mbox and loose .eml files
//! (tests/data/dmarc/mail, made by make-fixtures.py). Each must give exactly what the report
//! files themselves give; the forwarded copy counts once, ordinary mail is skipped and counted.

use crate::dmarc;

use base64::Engine;
use dmarc::*;
use std::io::Read;
use std::process::{Command, Stdio};

fn mail(name: &str) -> String {
    fixture("mail").join(name).display().to_string()
}

/// Everything but where the reports came from.
fn domains(out: &Out) -> serde_json::Value {
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    json(out)["domains"].clone()
}

#[test]
fn maildir_mbox_and_eml_files_give_what_the_report_files_give() {
    let (_d, files) = run_with_config(&["--format", "json"], &all_fixtures());
    let expected = domains(&files);
    assert_eq!(json(&files)["reports_read"], 4);

    // The Maildir's messages as loose .eml files, in a directory with a subdirectory.
    let loose = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(loose.path().join("older")).expect("mkdir");
    for (i, sub) in ["cur", "new"].iter().enumerate() {
        for entry in std::fs::read_dir(fixture("mail/Maildir").join(sub)).expect("maildir") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .replace(':', "_");
            let dest = if i == 0 {
                loose.path().join(format!("{name}.eml"))
            } else {
                loose.path().join("older").join(format!("{name}.eml"))
            };
            std::fs::copy(&path, dest).expect("copy");
        }
    }

    for input in [
        mail("Maildir"),
        mail("reports.mbox"),
        loose.path().display().to_string(),
    ] {
        let (_d, out) = run_with_config(&["--format", "json"], std::slice::from_ref(&input));
        assert_eq!(domains(&out), expected, "{input}");
        let v = json(&out);
        assert_eq!(v["reports_read"], 4, "{input}");
        assert_eq!(v["messages_read"], 8, "{input}");
        assert_eq!(v["messages_without_report"], 3, "{input}");
        assert_eq!(v["duplicates"], 1, "{input}");
        assert_eq!(v["errors"], serde_json::json!([]), "{input}");
        // The forwarded, quoted-printable copy of Microsoft's report is the duplicate.
        assert!(
            out.stderr.contains(
                "report 7c3f0f5e2b8a4d0e9a1b6c2d3e4f5a6b from Outlook.com already read from"
            ) && out.stderr.contains("counted once"),
            "{input}: {}",
            out.stderr
        );
    }

    // The text report says what was read and skipped, and the rest is the same as for files.
    let (_d, text) = run_with_config(&[], &[mail("Maildir")]);
    let (_d, text_files) = run_with_config(&[], &all_fixtures());
    assert!(text.stdout.contains("\nRead: 4 reports (from 8 e-mail messages; 3 without a report skipped; 1 duplicate counted once)\n"), "{}", text.stdout);
    let body = |s: &str| {
        s.split_once("\n\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    };
    assert_eq!(body(&text.stdout), body(&text_files.stdout));
    assert!(text.stdout.contains("By outcome: 150 through this relay, 0 from other authorised senders, 53 failing that look legitimate, 9 failing that look forged"), "{}", text.stdout);
}

#[test]
fn a_damaged_report_attachment_is_named_and_the_rest_still_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = std::fs::read(fixture(OUTLOOK_GZ)).expect("fixture");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&gz[..gz.len() / 2]);
    let eml = format!(
        "From: dmarcreport@microsoft.com\nSubject: Report Domain: example.com\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nReport.\n--b\n\
         Content-Type: application/octet-stream; name=\"report.xml.gz\"\nContent-Transfer-Encoding: base64\n\n{b64}\n--b--\n"
    );
    let damaged = dir.path().join("damaged.eml");
    std::fs::write(&damaged, eml).expect("write");
    let missing = dir.path().join("no-such-mailbox");
    let (_d, out) = run_with_config(
        &["--format", "json"],
        &[
            damaged.display().to_string(),
            missing.display().to_string(),
            mail("reports.mbox"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("damaged.eml (report.xml.gz): corrupt or truncated gzip data"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no-such-mailbox: cannot read:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 problems above"), "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["reports_read"], 4);
    assert_eq!(v["messages_read"], 9);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2));
}

#[test]
fn since_leaves_out_earlier_days() {
    let (_d, out) = run_with_config(
        &["--format", "json", "--since", "2026-01-02"],
        &[mail("Maildir")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = json(&out);
    assert_eq!(v["reports_read"], 0);
    // The forwarded copy of one report is left out before it could be a duplicate.
    assert_eq!(v["before_since"], 5);
    assert_eq!(v["since"], "2026-01-02");
    assert_eq!(v["domains"], serde_json::json!([]));

    let (_d, out) = run_with_config(&["--since", "2026-01-01"], &[mail("Maildir")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Read: 4 reports (from 8 e-mail messages; 3 without a report skipped; 1 duplicate counted once; 0 before 2026-01-01 left out)"), "{}", out.stdout);

    for bad in ["2026-02-30", "yesterday", "2026-1-5"] {
        let (_d, out) = run_with_config(&["--since", bad], &[mail("Maildir")]);
        assert_eq!(out.code, 2, "{bad}");
        assert!(
            out.stderr.contains("not a date (give YYYY-MM-DD)"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn a_closed_standard_output_ends_the_run_without_a_panic() {
    // A pipe nobody reads from any more: every write to it fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(BIN)
        .args(["dmarc-report", &mail("reports.mbox")])
        .env("DKIM_RELAY_CONFIG", "/nonexistent/dkim-relay.yaml")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    // Quietly, as every command stops when its reader goes away (cli_io).
    assert_eq!(stderr, "");
    assert_eq!(status.code(), Some(0), "{stderr}");

    // The same through a shell pipeline, as an operator types it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{BIN}' dmarc-report --format json '{}' | head -c 1",
            mail("Maildir")
        ))
        .env("DKIM_RELAY_CONFIG", "/nonexistent/dkim-relay.yaml")
        .output()
        .expect("sh");
    assert_eq!(out.stdout, b"{");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn out_writes_the_file_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("report.json");
    std::fs::write(&target, "old").expect("write");
    let target_s = target.display().to_string();
    let (_d, out) = run_with_config(
        &["--format", "json", "--out", &target_s],
        &[mail("Maildir")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).expect("read")).expect("json");
    assert_eq!(written["reports_read"], 4);
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert_eq!(left.len(), 1, "no temporary file left behind");

    let (_d, out) = run_with_config(&["--out", "/nonexistent-dir/r.txt"], &[mail("Maildir")]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot write /nonexistent-dir/r.txt"),
        "{}",
        out.stderr
    );
}

#[test]
fn imap_without_a_password_or_with_a_bad_url_says_so() {
    let out = Command::new(BIN)
        .args(["dmarc-report", "--imap", "imaps://u@127.0.0.1:1/INBOX"])
        .env_remove("DKIM_RELAY_IMAP_PASSWORD")
        .env("DKIM_RELAY_CONFIG", "/nonexistent/dkim-relay.yaml")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--imap needs a password: give --password-file FILE or set $DKIM_RELAY_IMAP_PASSWORD"
        ),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["dmarc-report", "--imap", "imap://u@127.0.0.1/INBOX"])
        .env("DKIM_RELAY_IMAP_PASSWORD", "x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only imaps://"));
    // Nothing listening: named with the reason, the other inputs still reported.
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "x\n").expect("write");
    let password = password.display().to_string();
    let (_d, out) = run_with_config(
        &[
            "--imap",
            "imaps://u@127.0.0.1:1/INBOX",
            "--password-file",
            &password,
        ],
        &[mail("reports.mbox")],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("imaps://u@127.0.0.1:1/INBOX: cannot connect"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("Read: 4 reports"), "{}", out.stdout);
}

//! The command line as an operator types it: `-c FILE` before or after the queue action;
//! every command stopping quietly (exit 0, nothing on stderr, never a panic) when the reader of
//! its output goes away (`| head`); `verify` over several files naming each.

use crate::relay;
use crate::smtp_client;

use relay::Relay;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dkim-relay");

fn relay_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("DKIM_RELAY_CONFIG")
        .stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_flag_before_or_after_the_queue_action() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    let cfg = relay.config.to_str().unwrap();
    let after = relay_cmd(&["queue", "list", "-c", cfg]).output().unwrap();
    let before = relay_cmd(&["queue", "-c", cfg, "list"]).output().unwrap();
    let long = relay_cmd(&["queue", "list", "--config", cfg])
        .output()
        .unwrap();
    for o in [&after, &before, &long] {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "Mail queue is empty\n");
    }
    let show = relay_cmd(&["queue", "show", "0000000000000000AB", "-c", cfg])
        .output()
        .unwrap();
    assert!(
        text(&show.stderr).contains("no such message"),
        "{}",
        text(&show.stderr)
    );
}

/// Run a command whose standard output is a pipe that nobody reads any more (the reader is
/// closed before the command starts, so its first write meets EPIPE for certain).
fn with_reader_gone(mut c: Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    c.stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    // The command may not read its input at all (or exit first): ignore EPIPE here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// A DMARC aggregate report with `n` records from different sources: its JSON analysis is far
/// larger than a pipe's buffer.
fn big_report(dir: &Path, n: usize) -> PathBuf {
    let mut xml = String::from(
        "<?xml version=\"1.0\"?>\n<feedback><report_metadata><org_name>big.test</org_name>\
         <email>r@big.test</email><report_id>big-1</report_id><date_range><begin>1767225600\
         </begin><end>1767311999</end></date_range></report_metadata><policy_published>\
         <domain>example.com</domain><p>none</p></policy_published>\n",
    );
    for i in 0..n {
        xml.push_str(&format!(
            "<record><row><source_ip>10.{}.{}.{}</source_ip><count>3</count><policy_evaluated>\
             <disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated>\
             </row><identifiers><header_from>example.com</header_from></identifiers>\
             <auth_results><spf><domain>s{i}.example.net</domain><result>pass</result></spf>\
             </auth_results></record>\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    xml.push_str("</feedback>\n");
    let path = dir.join("big.xml");
    std::fs::write(&path, xml).unwrap();
    path
}

#[test]
fn every_command_stops_quietly_when_its_reader_is_gone() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    let cfg = relay.config.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let report = big_report(dir.path(), 50);
    let report = report.to_str().unwrap().to_string();
    let keys = dir.path().join("keys");
    let keys = keys.to_str().unwrap().to_string();
    let mailq = dir.path().join("mailq");
    std::os::unix::fs::symlink(BIN, &mailq).unwrap();

    let cases: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["queue", "list", "-c", &cfg], b""),
        (vec!["check-config", "-c", &cfg], b""),
        (vec!["dmarc-report", "--format", "json", &report], b""),
        (vec!["dmarc-report", &report], b""),
        (vec!["rotate", "--status", "-c", &cfg], b""),
        (
            vec![
                "keygen",
                "--domain",
                "example.com",
                "--selector",
                "s1",
                "--algorithm",
                "ed25519",
                "--out",
                &keys,
            ],
            b"",
        ),
        (vec!["hash-password"], b"a password\n"),
        (vec!["--help"], b""),
        (vec!["queue", "--help"], b""),
        (vec!["--version"], b""),
    ];
    for (args, stdin) in cases {
        let out = with_reader_gone(relay_cmd(&args), stdin);
        let err = text(&out.stderr);
        assert!(
            out.status.code() == Some(0) && err.is_empty(),
            "dkim-relay {}: {:?}, stderr:\n{err}",
            args.join(" "),
            out.status
        );
    }
    // mailq: the symlink, config from the environment.
    let mut c = Command::new(&mailq);
    c.env("DKIM_RELAY_CONFIG", &cfg);
    let out = with_reader_gone(c, b"");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "mailq: {:?} {}",
        out.status,
        text(&out.stderr)
    );
}

/// The issue's own commands, through a shell pipe into `head`; PIPESTATUS tells the relay's
/// exit status.
#[test]
fn piped_into_head_exits_zero_with_nothing_on_stderr() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    let dir = tempfile::tempdir().unwrap();
    let report = big_report(dir.path(), 3000);
    let script = r#"
        "$BIN" dmarc-report --format json "$REPORT" 2>"$DIR/err1" | head -c 1 >/dev/null
        echo "dmarc ${PIPESTATUS[0]}"
        "$BIN" queue list -c "$CFG" 2>"$DIR/err2" | head -1 >/dev/null
        echo "queue ${PIPESTATUS[0]}"
    "#;
    let out = Command::new("bash")
        .args(["-c", script])
        .env("BIN", BIN)
        .env("REPORT", &report)
        .env("CFG", &relay.config)
        .env("DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "dmarc 0\nqueue 0\n",
        "{}",
        text(&out.stderr)
    );
    for e in ["err1", "err2"] {
        let err = std::fs::read_to_string(dir.path().join(e)).unwrap();
        assert!(err.is_empty(), "{e}: {err}");
    }
}

async fn submit(relay: &Relay, subject: &str) {
    let mut c = smtp_client::Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let msg = format!(
        "From: app@example.com\r\nTo: a@example.net\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    );
    let r = c
        .send("app@example.com", &["a@example.net"], msg.as_bytes())
        .await;
    assert_eq!(r.code, 250, "{r:?}");
}

/// The `.eml` files in `dir`, once there are `n`.
fn wait_for_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let start = Instant::now();
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort();
        if files.len() >= n {
            return files;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{files:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn verify_takes_several_files_and_names_each() {
    let relay = Relay::start("delivery:\n  mode: directory\n  directory: outbox\n");
    submit(&relay, "first").await;
    submit(&relay, "second").await;
    let files = wait_for_files(&relay.outbox(), 2);
    let tampered = relay.dir.path().join("tampered.eml");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&tampered, text(&bytes).replace("Hello.", "Hellp.")).unwrap();
    let key = relay::rsa_key();
    let verify = |paths: &[&Path]| {
        let mut c = relay_cmd(&["verify"]);
        c.args(paths).arg("--key").arg(&key).args([
            "--domain",
            "example.com",
            "--selector",
            relay::RSA_SELECTOR,
        ]);
        c.output().unwrap()
    };

    let out = verify(&[&files[0], &files[1]]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for f in &files {
        let prefix = format!("{}: ", f.display());
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains("pass")),
            "{prefix}\n{stdout}"
        );
    }
    assert!(stdout.lines().all(|l| files
        .iter()
        .any(|f| l.starts_with(&format!("{}: ", f.display())))));

    // One bad message among good ones: exit 1, and its line names it.
    let missing = relay.dir.path().join("missing.eml");
    let out = verify(&[&files[0], &tampered, &missing]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let bad = format!("{}: ", tampered.display());
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&bad) && !l.contains("pass")),
        "{stdout}"
    );
    assert!(
        stderr.starts_with(&format!("{}: cannot read", missing.display())),
        "{stderr}"
    );

    // Into a pipe nobody reads: quiet, like every command.
    let mut c = relay_cmd(&["verify"]);
    c.args(&files).arg("--key").arg(&key);
    let out = with_reader_gone(c, b"");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );

    // One file: the output stays as it always was, without a prefix.
    let out = verify(&[&files[1]]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("pass"),
        "{}",
        text(&out.stdout)
    );
}

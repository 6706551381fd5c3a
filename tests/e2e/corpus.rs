//! A corpus of real-world messages nobody on the team wrote (tests/corpus/README.md: the
//! mail-parser crate's test mail, CPython's email test data, SpamScope's spam samples; 272
//! messages), each submitted to the real relay, which delivers to a receiving SMTP server that
//! refuses lines over 998 bytes. Every accepted message must arrive with every line within the
//! limit, both signatures verified by dkimpy, and every MIME part decoding (Python's `email`)
//! to what was submitted; every refusal must be one the contract requires.

use crate::relay;
use crate::smtp_client;
use crate::smtp_sink;

use relay::Relay;
use smtp_client::Client;
use smtp_sink::Sink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Every file of the fetched corpus, sorted.
fn corpus() -> Vec<PathBuf> {
    let root = Path::new(relay::ROOT).join("tests/corpus/fetched");
    let mut files = Vec::new();
    for source in ["mail-parser-rs", "cpython", "spamscope"] {
        if let Ok(dir) = std::fs::read_dir(root.join(source)) {
            files.extend(dir.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

/// The message as an SMTP client would send it for our test client: no mbox "From " line,
/// CRLF line ends (the last line too), and its From field(s) replaced by one the client may
/// use.
fn as_submitted(raw: &[u8]) -> Vec<u8> {
    let mut text = raw.to_vec();
    if text.starts_with(b"From ") {
        let end = memchr::memchr(b'\n', &text).map_or(text.len(), |p| p + 1);
        text.drain(..end);
    }
    // Line ends: CRLF, LF and lone CR all become CRLF.
    let mut crlf = Vec::with_capacity(text.len() + text.len() / 30);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => {
                crlf.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => crlf.extend_from_slice(b"\r\n"),
            b => crlf.push(b),
        }
        i += 1;
    }
    let split = memchr::memmem::find(&crlf, b"\r\n\r\n").map_or(crlf.len(), |p| p + 2);
    let (head, body) = crlf.split_at(split);
    let mut out = b"From: Corpus <app@example.com>\r\n".to_vec();
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        if !continuation {
            skipping = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"from:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    if split == crlf.len() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    // SMTP has no other way to end data: the last line ends in CRLF on the wire.
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Refusals the contract requires, by what the reply says.
fn required_refusal(code: u16, text: &str) -> bool {
    code == 554
        && text.starts_with("5.6.0")
        && [
            "Malformed header section",
            "Duplicate",
            "must hold exactly one mailbox",
            "exactly one From",
            "From header field is not valid UTF-8",
            // A body line no encoding can fix (a MIME part's header line with no place to
            // fold it, a part in an encoding we cannot re-encode): never sent as it came.
            "SMTP allows 998",
            "nested more than",
        ]
        .iter()
        .any(|p| text.contains(p))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_world_messages_are_delivered_verified_and_intact() {
    // Nothing in this corpus has a body line over 998 bytes (`None`: no corpus, outside CI).
    if let Some(reencoded) = relay_corpus("").await {
        assert_eq!(reencoded, 0);
    }
}

/// With `eight_bit: encode`, every 8-bit part of real-world mail goes through the MIME walk
/// and the quoted-printable encoder, and still decodes to what was submitted.
#[tokio::test(flavor = "multi_thread")]
async fn real_world_eight_bit_mail_is_encoded_verified_and_intact() {
    let reencoded = relay_corpus("limits:\n  eight_bit: encode\n").await;
    assert!(
        reencoded.is_none_or(|n| n >= 10),
        "{reencoded:?} re-encoded"
    );
}

/// Relay the corpus with `extra` config; check every accepted message as it arrived. Returns
/// how many were re-encoded (None: no corpus here, skipped).
async fn relay_corpus(extra: &str) -> Option<u64> {
    let files = corpus();
    if files.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the corpus is required in CI: run tests/corpus/fetch.sh"
        );
        eprintln!("skipped: no corpus (run tests/corpus/fetch.sh)");
        return None;
    }
    assert!(files.len() >= 250, "{} messages", files.len());
    let sink = Sink::start(None).await;
    sink.enforce_line_limit();
    let relay = Relay::start(&format!(
        "delivery:\n  mode: relay_host\n  retry: [1s]\n  connect_timeout: 5s\n  command_timeout: 30s\n  relay_host:\n    address: \"127.0.0.1:{}\"\n    tls: none\n{extra}",
        sink.addr.port()
    ));
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let raw = std::fs::read(path).expect("read corpus file");
        let message = as_submitted(&raw);
        let rcpt = format!("corpus-{i}@example.net");
        let r = c.send("app@example.com", &[&rcpt], &message).await;
        let name = path
            .strip_prefix(Path::new(relay::ROOT).join("tests/corpus/fetched"))
            .unwrap_or(path)
            .display()
            .to_string();
        match r.code {
            250 => accepted.push((rcpt, name, message)),
            _ => {
                assert!(
                    required_refusal(r.code, &r.text),
                    "{name}: refused with {r:?}, which the contract does not require"
                );
                refused.push((name, format!("{} {}", r.code, r.text)));
                c.cmd("RSET").await;
            }
        }
    }
    c.cmd("QUIT").await;
    eprintln!(
        "{} messages: {} accepted, {} refused",
        files.len(),
        accepted.len(),
        refused.len()
    );
    for (name, reply) in &refused {
        eprintln!("  refused {name}: {reply}");
    }
    assert!(accepted.len() * 10 >= files.len() * 8, "most are accepted");

    let got = sink
        .wait_for(accepted.len(), Duration::from_secs(120))
        .await;
    assert_eq!(got.len(), accepted.len(), "{}", relay.log());
    assert_eq!(
        sink.refused_too_long(),
        0,
        "a line over 998 bytes reached the receiver"
    );
    let (_, metrics) = relay::http_get(relay.metrics, "/metrics").expect("/metrics");
    let reencoded: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("dkim_relay_messages_reencoded_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    eprintln!("re-encoded: {reencoded}");

    // One Python process checks them all: dkimpy on every signature, decoded parts equal.
    // `DKIM_RELAY_CORPUS_OUT=DIR` keeps what was submitted and delivered there.
    let tmp = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("DKIM_RELAY_CORPUS_OUT").map(PathBuf::from);
    let dir_path = kept.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir_path).expect("output folder");
    let dir = dir_path.as_path();
    for (rcpt, name, submitted) in &accepted {
        let m = got
            .iter()
            .find(|m| m.recipients == [rcpt.clone()])
            .unwrap_or_else(|| panic!("nothing delivered to {rcpt}"));
        let lines_ok = m
            .data
            .split(|b| *b == b'\n')
            .all(|l| l.strip_suffix(b"\r").unwrap_or(l).len() <= 998);
        assert!(lines_ok, "{rcpt}: a line over 998 bytes");
        std::fs::write(dir.join(format!("{rcpt}.submitted")), submitted).unwrap();
        std::fs::write(dir.join(format!("{rcpt}.source")), name).unwrap();
        std::fs::write(dir.join(format!("{rcpt}.delivered")), &m.data).unwrap();
    }
    let records: serde_json::Map<String, serde_json::Value> = relay::dkim_records()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let records_file = dir.join("records.json");
    std::fs::write(&records_file, serde_json::to_vec(&records).unwrap()).unwrap();
    let Some(python) = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import dkim"])
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        assert!(std::env::var_os("CI").is_none(), "dkimpy is required in CI");
        eprintln!("dkimpy not installed: signatures and parts not checked");
        return Some(reencoded);
    };
    let out = Command::new(python)
        .arg(format!("{}/tests/support/corpus_check.py", relay::ROOT))
        .arg("--records")
        .arg(&records_file)
        .arg(dir)
        .output()
        .expect("run corpus_check.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "{report}");
    Some(reencoded)
}

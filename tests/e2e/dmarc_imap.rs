//! `dmarc-report --imap` against a real Dovecot (started by the test on a loopback port with
//! TLS and a test user whose INBOX is the fixture Maildir): the report equals the one made from
//! the Maildir itself, and the mailbox is left exactly as it was — the same messages, flags,
//! UIDs (UIDVALIDITY, UIDNEXT) and files. Also: an untrusted certificate and a wrong password
//! are named, not crashed on.

use crate::dmarc;
use crate::dovecot;
use crate::relay;

use dmarc::*;
use dovecot::Dovecot;
use futures_util::TryStreamExt;
use std::path::Path;

/// What the mailbox looks like through IMAP: UIDVALIDITY, UIDNEXT, and per message its UID,
/// flags and size. Taken with EXAMINE, so taking it changes nothing.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    uid_validity: Option<u32>,
    uid_next: Option<u32>,
    messages: Vec<(u32, Vec<String>, u32)>,
}

fn snapshot(server: &Dovecot) -> Snapshot {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cert = relay::cert();
        let tls = dkim_relay::trust::client_config(Some(Path::new(&cert))).expect("trust");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .expect("tls");
        let mut client = async_imap::Client::new(stream);
        client.read_response().await.expect("greeting");
        let mut session = client
            .login(dovecot::USER, dovecot::PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .expect("login");
        let mailbox = session.examine("INBOX").await.expect("examine");
        let mut messages: Vec<(u32, Vec<String>, u32)> = session
            .uid_fetch("1:*", "(UID FLAGS RFC822.SIZE)")
            .await
            .expect("fetch")
            .map_ok(|f| {
                let mut flags: Vec<String> = f.flags().map(|x| format!("{x:?}")).collect();
                flags.sort();
                (f.uid.unwrap_or(0), flags, f.size.unwrap_or(0))
            })
            .try_collect()
            .await
            .expect("fetch");
        messages.sort();
        session.logout().await.expect("logout");
        Snapshot {
            uid_validity: mailbox.uid_validity,
            uid_next: mailbox.uid_next,
            messages,
        }
    })
}

#[test]
fn imap_reads_the_mailbox_like_the_maildir_and_changes_nothing() {
    let fixture_maildir = fixture("mail/Maildir");
    let server = Dovecot::start(
        &fixture_maildir,
        Path::new(&relay::cert()),
        Path::new(&relay::cert_key()),
        relay::free_port,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let password_file = dir.path().join("imap-password");
    std::fs::write(&password_file, format!("{}\n", dovecot::PASSWORD)).expect("write");
    let password_arg = password_file.display().to_string();
    let cert = relay::cert();
    let url = server.url();

    let before = snapshot(&server);
    assert_eq!(before.messages.len(), 8, "{before:?}\n{}", server.log());
    // Half the fixture's messages were read (cur/, Seen) and half not: unread must stay unread.
    let seen = before
        .messages
        .iter()
        .filter(|(_, flags, _)| flags.iter().any(|f| f == "Seen"))
        .count();
    assert_eq!(seen, 4, "{before:?}");
    let files_before = server.files();

    let args = [
        "--format",
        "json",
        "--imap",
        &url,
        "--password-file",
        &password_arg,
        "--ca-file",
        &cert,
    ];
    let (_d, imap) = run_with_config(&args, &[]);
    assert_eq!(
        imap.code,
        0,
        "stderr: {}\ndovecot: {}",
        imap.stderr,
        server.log()
    );
    let (_d, maildir) = run_with_config(
        &["--format", "json"],
        &[fixture_maildir.display().to_string()],
    );
    let (imap_v, maildir_v) = (json(&imap), json(&maildir));
    assert_eq!(imap_v["domains"], maildir_v["domains"]);
    for key in [
        "reports_read",
        "messages_read",
        "messages_without_report",
        "duplicates",
    ] {
        assert_eq!(imap_v[key], maildir_v[key], "{key}");
    }
    assert_eq!(imap_v["reports_read"], 4);
    assert_eq!(imap_v["messages_read"], 8);
    assert!(
        imap.stderr.contains(&format!("{url} UID ")) && imap.stderr.contains("counted once"),
        "{}",
        imap.stderr
    );

    // The password from the environment works the same; --since limits what is fetched.
    let out = std::process::Command::new(BIN)
        .args(["dmarc-report", "--format", "json", "--since", "2999-01-01"])
        .args(["--imap", &url, "--ca-file", &cert])
        .env("DKIM_RELAY_IMAP_PASSWORD", dovecot::PASSWORD)
        .env("DKIM_RELAY_CONFIG", "/nonexistent/dkim-relay.yaml")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["messages_read"], 0);

    // Nothing changed: not a flag, not a UID, not a file.
    assert_eq!(server.files(), files_before);
    assert_eq!(snapshot(&server), before);

    // An untrusted certificate (no --ca-file) and a wrong password: named, exit 1, no report
    // lost from the other inputs.
    let (_d, out) = run_with_config(
        &["--imap", &url, "--password-file", &password_arg],
        &[fixture(GOOGLE).display().to_string()],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{url}: TLS handshake failed")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("Read: 1 report"), "{}", out.stdout);
    std::fs::write(&password_file, "wrong\n").expect("write");
    let (_d, out) = run_with_config(&args, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{url}: login failed")),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&server), before);
}

//! The sendmail front end end to end: the real binary invoked through a `sendmail` symlink the
//! way bsd-mailx, PHP's mail(), cron and git send-email invoke it, submitting to the real relay
//! over its unix socket (the relay knows us by our uid) or over SMTP with STARTTLS/TLS and AUTH;
//! the relay signs and delivers to a receiving SMTP server on loopback; signatures are checked
//! by mail-auth and dkimpy; refusals come back as sysexits codes.

use crate::relay;
use crate::sendmail_kit as sendmail;
use crate::smtp_sink;

use relay::Relay;
use sendmail::{fields, header_section, Front};
use smtp_sink::Sink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A relay with a unix listener for this uid (allowed example.com), delivering to `sink`.
fn relay_for(sink: &Sink) -> Relay {
    Relay::start_with_unix(
        &sendmail::unix_client("[\"example.com\"]"),
        &sendmail::relay_host(sink.addr.port(), "[1s]"),
    )
}

fn front_for(relay: &Relay) -> Front {
    let socket = relay.unix.as_ref().expect("unix listener");
    Front::new(
        &format!("unix:{}", socket.display()),
        "qualify_domain: example.com\n",
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_s_from_bsd_mailx_is_signed_and_delivered() {
    let mailx = "/usr/bin/bsd-mailx";
    if !Path::new(mailx).exists() {
        // .ci/run installs it: in CI its absence is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "bsd-mailx is required in CI"
        );
        eprintln!("SKIP: bsd-mailx is not installed (scripts/install-test-deps.sh installs it)");
        return;
    }
    let dns = sendmail::dns();
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let front = front_for(&relay);
    let mailrc = front.dir.path().join("mailrc");
    std::fs::write(
        &mailrc,
        format!("set sendmail={}\n", front.sendmail_path().display()),
    )
    .unwrap();
    let mut c = front.command(Path::new(mailx));
    c.env("MAILRC", &mailrc)
        .env("HOME", front.dir.path())
        .args(["-s", "disk almost full", "ops@example.net"]);
    let out = sendmail::run_async(c, b"Disk almost full on web1\n").await;
    assert!(out.status.success(), "mail: {}", sendmail::stderr(&out));

    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "relay log:\n{}", relay.log());
    let m = &got[0];
    let me = format!("{}@example.com", sendmail::user_name());
    assert_eq!(m.recipients, vec!["ops@example.net"]);
    assert_eq!(m.sender, me, "envelope sender: the calling user, qualified");
    assert_eq!(fields(&m.data, "From"), vec![me]);
    assert_eq!(fields(&m.data, "Subject"), vec!["disk almost full"]);
    sendmail::assert_verifies(&dns, &m.data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn php_mail_t_i_delivers_to_to_cc_and_bcc_and_drops_bcc() {
    let dns = sendmail::dns();
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let front = front_for(&relay);
    // What PHP writes to `sendmail -t -i`: LF line ends, and with -i a lone dot is content.
    let message = b"To: customer@example.net\nSubject: Your order\nFrom: Shop <shop@example.com>\nCc: Sales <sales@example.net>\nBcc: archive@example.net\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\nThanks for your order.\n.\nThe line above is a lone dot.\n";
    let out = front.sendmail_async(&["-t", "-i"], message).await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));
    assert!(
        out.stderr.is_empty(),
        "quiet on success: {}",
        sendmail::stderr(&out)
    );

    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "relay log:\n{}", relay.log());
    let m = &got[0];
    assert_eq!(
        sorted(m.recipients.clone()),
        vec![
            "archive@example.net",
            "customer@example.net",
            "sales@example.net"
        ],
        "every recipient delivered, Bcc included"
    );
    assert_eq!(
        m.sender, "shop@example.com",
        "envelope sender from the From header"
    );
    let head = header_section(&m.data);
    assert!(
        !head.to_ascii_lowercase().contains("\nbcc:"),
        "Bcc removed: {head}"
    );
    assert!(
        !head.contains("archive@"),
        "the Bcc address is nowhere: {head}"
    );
    assert!(
        !m.data.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "CRLF only"
    );
    let text = String::from_utf8_lossy(&m.data);
    assert!(
        text.ends_with("Thanks for your order.\r\n.\r\nThe line above is a lone dot.\r\n"),
        "{text}"
    );
    sendmail::assert_verifies(&dns, &m.data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_style_message_from_root_is_qualified_signed_and_delivered() {
    let dns = sendmail::dns();
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let front = front_for(&relay);
    let me = sendmail::user_name();
    // What cron (Debian's cron, cronie) pipes into `sendmail -FCronDaemon -i -B8BITMIME -oem`.
    let message = format!(
        "From: {me} (Cron Daemon)\nTo: {me}\nSubject: Cron <{me}@web1> /usr/local/bin/backup.sh\nMIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\nBackup fertig: 3 Dateien, Grüße\n"
    );
    let out = front
        .sendmail_async(
            &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", &me],
            message.as_bytes(),
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));

    let got = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "relay log:\n{}", relay.log());
    let m = &got[0];
    let qualified = format!("{me}@example.com");
    assert_eq!(m.recipients, vec![qualified.clone()]);
    assert_eq!(m.sender, qualified);
    assert_eq!(
        fields(&m.data, "From"),
        vec![format!("{qualified} (Cron Daemon)")],
        "qualified in place, display name kept"
    );
    assert_eq!(fields(&m.data, "To"), vec![qualified.clone()]);
    assert!(
        String::from_utf8_lossy(&m.data).contains("Grüße"),
        "8-bit body intact"
    );
    sendmail::assert_verifies(&dns, &m.data).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn git_send_email_style_recipients_as_arguments() {
    let dns = sendmail::dns();
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let front = front_for(&relay);
    // git send-email --sendmail-cmd runs `sendmail -i RCPT…` with the patch mail on stdin;
    // older setups add -f.
    let patch = b"From: Alice <alice@example.com>\nTo: list@example.net\nCc: bob@example.net\nSubject: [PATCH] fix the frobnicator\nDate: Mon, 23 Nov 2026 06:27:14 +0000\nMessage-ID: <20261123062714.1-1-alice@example.com>\nX-Mailer: git-send-email 2.47.3\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n\n---\n.\n..dots at the start\n-- \n2.47.3\n";
    let out = front
        .sendmail_async(
            &[
                "-i",
                "-f",
                "alice@example.com",
                "list@example.net",
                "bob@example.net",
            ],
            patch,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));

    // The real git send-email, when this machine has it.
    let git = Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).join("git-send-email"))
        .is_some_and(|p| p.exists());
    let mut expected = 1;
    if git {
        expected = 2;
        let repo = front.dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            let mut c = front.command(Path::new("git"));
            c.current_dir(&repo)
                .env("HOME", front.dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "Alice")
                .env("GIT_AUTHOR_EMAIL", "alice@example.com")
                .env("GIT_COMMITTER_NAME", "Alice")
                .env("GIT_COMMITTER_EMAIL", "alice@example.com")
                .args(args);
            c
        };
        for args in [
            &["init", "-q", "."][..],
            &["commit", "-q", "--allow-empty", "-m", "fix the frobnicator"][..],
            &["format-patch", "-1", "-q", "-o", "out"][..],
        ] {
            let o = sendmail::run(git(args), b"");
            assert!(o.status.success(), "git {args:?}: {}", sendmail::stderr(&o));
        }
        let patch = std::fs::read_dir(repo.join("out"))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        let cmd = format!("--sendmail-cmd={}", front.sendmail_path().display());
        let o = sendmail::run_async(
            {
                let mut c = git(&[
                    "send-email",
                    "--confirm=never",
                    "--from=Alice <alice@example.com>",
                    "--to=list@example.net",
                    "--cc=bob@example.net",
                    &cmd,
                ]);
                c.arg(&patch);
                c
            },
            b"",
        )
        .await;
        assert!(
            o.status.success(),
            "git send-email: {}{}",
            sendmail::stdout(&o),
            sendmail::stderr(&o)
        );
    } else {
        // Optional: git-email is not among the test dependencies (the sendmail interface it
        // uses is the one exercised above with git's own arguments).
        eprintln!("SKIP real git send-email: not available");
    }

    let got = sink.wait_for(expected, Duration::from_secs(20)).await;
    assert_eq!(got.len(), expected, "relay log:\n{}", relay.log());
    for m in &got {
        assert_eq!(m.sender, "alice@example.com");
        // git also copies the author (alice) unless told not to.
        let rcpts = m.recipients.clone();
        assert!(
            rcpts.contains(&"bob@example.net".to_string())
                && rcpts.contains(&"list@example.net".to_string()),
            "{rcpts:?}"
        );
        sendmail::assert_verifies(&dns, &m.data).await;
    }
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(
        text.contains("\r\n---\r\n.\r\n..dots at the start\r\n"),
        "dots kept: {text}"
    );
}

#[test]
fn relay_down_is_a_temporary_failure_75() {
    let front = Front::new(
        "unix:/nonexistent/dkim-relay.sock",
        "qualify_domain: example.com\n",
    );
    let msg = b"From: a@example.com\nSubject: x\n\nbody\n";
    let out = front.sendmail(&["-i", "ops@example.net"], msg);
    assert_eq!(out.status.code(), Some(75), "{}", sendmail::stderr(&out));
    let err = sendmail::stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("sendmail: cannot reach the relay at unix:/nonexistent"),
        "{err}"
    );

    // The same through `dkim-relay sendmail`, `--` and all.
    let mut c = front.command(std::path::Path::new(env!("CARGO_BIN_EXE_dkim-relay")));
    c.args(["sendmail", "-i", "--", "ops@example.net"]);
    let out = sendmail::run(c, msg);
    assert_eq!(out.status.code(), Some(75), "{}", sendmail::stderr(&out));

    let port = relay::free_port();
    let mut front = front;
    front.submit = format!("smtp://127.0.0.1:{port}");
    let out = front.sendmail(&["-i", "ops@example.net"], msg);
    assert_eq!(out.status.code(), Some(75), "{}", sendmail::stderr(&out));
    assert!(sendmail::stderr(&out).contains(&format!("smtp://127.0.0.1:{port}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_by_policy_are_77() {
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let front = front_for(&relay);
    // other.test has a key, but this unix user may not send as it.
    let out = front
        .sendmail_async(
            &["-t", "-i"],
            b"From: x@other.test\nTo: a@example.net\n\nhi\n",
        )
        .await;
    let err = sendmail::stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(
        err.contains("550 5.7.1"),
        "the relay's reason is shown: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // A uid the relay does not know gets 530 at MAIL: 77 as well.
    let stranger = Relay::start_with_unix(
        "  - unix_user: \"4242424\"\n    allow_from: [\"example.com\"]\n",
        &sendmail::relay_host(sink.addr.port(), "[1s]"),
    );
    let front = front_for(&stranger);
    let out = front
        .sendmail_async(&["-i", "a@example.net"], b"From: a@example.com\n\nhi\n")
        .await;
    let err = sendmail::stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains("530 5.7.0"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.messages().is_empty(), "nothing was delivered");
    assert_eq!(relay.queued() + stranger.queued(), 0);
}

#[test]
fn bad_usage_64_and_bad_messages_65() {
    let front = Front::new("unix:/nonexistent/dkim-relay.sock", "");
    let out = front.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(64), "{}", sendmail::stderr(&out));
    assert!(sendmail::stderr(&out).contains("unknown option -q"));
    let out = front.sendmail(&["-t"], b"From: a@example.com\nSubject: nobody\n\nx\n");
    assert_eq!(out.status.code(), Some(64), "{}", sendmail::stderr(&out));
    // Cron's From without a domain, and no qualify_domain to complete it.
    let out = front.sendmail(
        &["-i", "ops@example.net"],
        b"From: root (Cron Daemon)\n\nx\n",
    );
    assert_eq!(out.status.code(), Some(65), "{}", sendmail::stderr(&out));
    assert!(sendmail::stderr(&out).contains("qualify_domain"));
    let out = front.sendmail(&["-i", "not an address"], b"From: a@example.com\n\nx\n");
    assert_eq!(out.status.code(), Some(65), "{}", sendmail::stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_with_starttls_and_smtps_with_auth_verify_the_relay_certificate() {
    let dns = sendmail::dns();
    let sink = Sink::start(None).await;
    let relay = relay_for(&sink);
    let password_file = relay.dir.path().join("sendmail.pass");
    std::fs::write(&password_file, format!("{}\n", relay::PASSWORD)).unwrap();
    let msg = b"From: app@example.com\nTo: a@example.net\nSubject: over tcp\n\nhello\n";

    // smtp:// with credentials in the URL (percent-encoded user), STARTTLS, dev CA trusted.
    let mut front = Front::new(
        &format!(
            "smtp://%61pp:{}@127.0.0.1:{}",
            relay::PASSWORD,
            relay.starttls.port()
        ),
        "",
    );
    front.env.push(("SSL_CERT_FILE".into(), relay::cert()));
    let out = front.sendmail_async(&["-t", "-i", "-v"], msg).await;
    let err = sendmail::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(">>> STARTTLS") && err.contains("AUTH PLAIN ****"),
        "{err}"
    );
    assert!(
        !err.contains(relay::PASSWORD),
        "the password is never shown: {err}"
    );

    // smtps:// with username + password_file from the sendmail config, ca_file there too.
    let front = Front::new(
        &format!("smtps://localhost:{}", relay.implicit.port()),
        &format!(
            "username: app\npassword_file: {}\nca_file: {}\n",
            password_file.display(),
            relay::cert()
        ),
    );
    let out = front.sendmail_async(&["-t", "-i"], msg).await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));

    // Without the dev CA the certificate is not trusted: nothing is sent, 75.
    let front = Front::new(
        &format!("smtps://localhost:{}", relay.implicit.port()),
        &format!(
            "username: app\npassword_file: {}\n",
            password_file.display()
        ),
    );
    let out = front.sendmail_async(&["-t", "-i"], msg).await;
    let err = sendmail::stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("TLS with smtps://localhost"), "{err}");

    // A wrong password is a refusal by policy.
    std::fs::write(&password_file, "wrong\n").unwrap();
    let front = Front::new(
        &format!("smtps://localhost:{}", relay.implicit.port()),
        &format!(
            "username: app\npassword_file: {}\nca_file: {}\n",
            password_file.display(),
            relay::cert()
        ),
    );
    let out = front.sendmail_async(&["-t", "-i"], msg).await;
    assert_eq!(out.status.code(), Some(77), "{}", sendmail::stderr(&out));

    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "relay log:\n{}", relay.log());
    for m in &got {
        assert_eq!(m.sender, "app@example.com");
        sendmail::assert_verifies(&dns, &m.data).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_has_its_mode_and_a_stale_one_is_replaced_after_a_crash() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let sink = Sink::start(None).await;
    let mut relay = relay_for(&sink);
    let socket = relay.unix.clone().unwrap();
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666, "the default mode");
    relay.kill9();
    assert!(socket.exists(), "kill -9 leaves the socket file behind");
    relay.spawn();
    let front = front_for(&relay);
    let out = front
        .sendmail_async(
            &["-i", "a@example.net"],
            b"From: a@example.com\n\nafter the crash\n",
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", sendmail::stderr(&out));
    assert_eq!(
        sink.wait_for(1, Duration::from_secs(10)).await.len(),
        1,
        "{}",
        relay.log()
    );
}

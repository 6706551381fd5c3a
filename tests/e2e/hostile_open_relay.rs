//! Never an open relay: every way in without a valid identity (no AUTH, failed AUTH, AUTH then
//! RSET, a trusted network that does not match, HELO only, AUTH in clear then STARTTLS, a unix
//! socket peer whose uid is not a client, an identity sending for a domain it does not own)
//! is refused with its exact reply and queues nothing. Positive controls show each path can
//! succeed when the identity is right, so the refusals are not an accident of the setup.

use crate::hostile_kit;
use crate::relay;
use crate::smtp_client;

use hostile_kit::{authed, client_from, outbox_files, start_outbox_edited};
use relay::Relay;
use smtp_client::{Client, Reply};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

const MSG: &[u8] = b"From: app@example.com\r\nSubject: relay?\r\n\r\nhi\r\n";

/// The trusted network 127.0.0.2/32 and a unix listener for uid `unix_uid`.
fn relay_with(unix_uid: u32) -> Relay {
    // A short idle timeout: a test waiting for a reply that never comes fails fast.
    start_outbox_edited("  idle_timeout: 10s\n", "", |yaml, dir| {
        yaml.replacen(
            "listeners:\n",
            &format!("listeners:\n  - unix: {}\n", dir.join("submit.sock").display()),
            1,
        )
        .replacen(
            "clients:\n",
            &format!(
                "clients:\n  - network: 127.0.0.2/32\n    allow_from: [\"example.com\"]\n  - unix_user: \"{unix_uid}\"\n    allow_from: [\"example.com\"]\n"
            ),
            1,
        )
    })
}

fn socket_path(relay: &Relay) -> std::path::PathBuf {
    relay.dir.path().join("submit.sock")
}

/// Our own uid, without unsafe code: the owner of a file we just made.
fn my_uid() -> u32 {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    f.as_file().metadata().expect("metadata").uid()
}

fn assert_reply(r: &Reply, code: u16, status: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert!(r.text.starts_with(status), "want {status}: {r:?}");
}

/// MAIL must be refused with 530 5.7.0, and a pipelined transaction after it leads nowhere.
async fn assert_cannot_send(c: &mut Client) {
    assert_reply(&c.cmd("MAIL FROM:<app@example.com>").await, 530, "5.7.0");
    assert_reply(&c.cmd("RCPT TO:<a@example.net>").await, 503, "5.5.1");
    assert_reply(&c.cmd("DATA").await, 503, "5.5.1");
    // The chunk is read and dropped, never taken as a command.
    c.write(b"BDAT 6 LAST\r\nQUIT\r\n").await;
    assert_reply(&c.read_reply().await, 503, "5.5.1");
    assert_eq!(c.cmd("NOOP").await.code, 250);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_without_a_valid_identity_queues_a_message() {
    let relay = relay_with(4242);

    // No AUTH at all.
    let mut c = Client::connect(relay.plain).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_cannot_send(&mut c).await;

    // Failed AUTH (PLAIN and LOGIN), then trying anyway.
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_reply(&c.auth_plain("app", "wrong").await, 535, "5.7.8");
    assert_reply(&c.auth_plain("nobody", relay::PASSWORD).await, 535, "5.7.8");
    // authzid for another user with app's password: refused, not a way in.
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("other\0app\0{}", relay::PASSWORD));
    assert_reply(&c.cmd(&format!("AUTH PLAIN {token}")).await, 535, "5.7.8");
    assert_cannot_send(&mut c).await;

    // AUTH, a transaction, RSET: the reset transaction cannot be completed, and a message
    // body sent blindly after it is read as (failing) commands.
    let mut c = authed(relay.plain).await;
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    assert_eq!(c.cmd("RSET").await.code, 250);
    assert_reply(&c.cmd("DATA").await, 503, "5.5.1");
    assert_reply(&c.cmd("From: app@example.com").await, 500, "5.5.1");
    assert_reply(&c.cmd(".").await, 500, "5.5.1");

    // HELO only: no AUTH possible (it needs EHLO) and no sending.
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    assert_eq!(c.cmd("HELO client.test").await.code, 250);
    assert_reply(&c.auth_plain("app", relay::PASSWORD).await, 503, "5.5.1");
    assert_cannot_send(&mut c).await;

    // A source address next to the trusted one.
    let mut c = client_from("127.0.0.3", relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_cannot_send(&mut c).await;

    // AUTH in clear text (allowed on loopback), then STARTTLS: the identity does not survive.
    let mut c = Client::connect(relay.starttls).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("app", relay::PASSWORD).await.code, 235);
    let mut c = c.starttls().await;
    assert_cannot_send(&mut c).await;

    // The unix socket, from a uid that is not a client (we are not uid 4242).
    assert_ne!(my_uid(), 4242);
    let s = tokio::net::UnixStream::connect(socket_path(&relay))
        .await
        .expect("unix connect");
    let mut c = Client::from_stream(s);
    assert_eq!(c.read_reply().await.code, 220);
    c.cmd("EHLO local").await;
    assert_cannot_send(&mut c).await;

    // An identity, but not for this domain: envelope or header From of another client.
    let mut c = Client::connect(relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_eq!(c.auth_plain("other", relay::PASSWORD).await.code, 235);
    assert_reply(&c.cmd("MAIL FROM:<app@example.com>").await, 550, "5.7.1");
    let r = c.send("x@other.test", &["a@example.net"], MSG).await;
    assert_reply(&r, 550, "5.7.1");
    // The trusted network may send for example.com only.
    let mut c = client_from("127.0.0.2", relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_reply(&c.cmd("MAIL FROM:<x@other.test>").await, 550, "5.7.1");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.queued(), 0);
    assert!(outbox_files(&relay, 0, Duration::ZERO).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn positive_controls_each_path_can_send_with_the_right_identity() {
    let relay = relay_with(my_uid());
    // AUTH.
    let mut c = authed(relay.plain).await;
    assert_reply(
        &c.send("app@example.com", &["a@example.net"], MSG).await,
        250,
        "2.0.0",
    );
    // RSET then a full new transaction in the same session.
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    assert_eq!(c.cmd("RSET").await.code, 250);
    assert_reply(
        &c.send("app@example.com", &["a@example.net"], MSG).await,
        250,
        "2.0.0",
    );
    // The trusted network.
    let mut c = client_from("127.0.0.2", relay.plain).await;
    c.read_reply().await;
    c.cmd("EHLO client.test").await;
    assert_reply(
        &c.send("app@example.com", &["a@example.net"], MSG).await,
        250,
        "2.0.0",
    );
    // The unix socket, from our own uid.
    let s = tokio::net::UnixStream::connect(socket_path(&relay))
        .await
        .expect("unix connect");
    let mut c = Client::from_stream(s);
    assert_eq!(c.read_reply().await.code, 220);
    c.cmd("EHLO local").await;
    assert_reply(
        &c.send("app@example.com", &["a@example.net"], MSG).await,
        250,
        "2.0.0",
    );
    assert_eq!(
        outbox_files(&relay, 4, Duration::from_secs(10)).await.len(),
        4
    );
}

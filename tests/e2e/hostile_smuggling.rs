//! SMTP smuggling, end to end: every published end-of-data confusion payload, followed by
//! pipelined commands that would start a second transaction, is sent over a raw TCP socket to
//! the real relay. Exactly one message per connection may reach the receiving server, whole,
//! without a bare CR or LF; the client sees exactly one 250 for it. With
//! `bare_newlines: reject` the same payloads get 554 5.6.0 and nothing is queued. Last, a
//! bounded property test: random bodies, stuffed and terminated, arrive in the outbox as
//! exactly their normalised bytes.

use crate::hostile_kit;
use crate::relay;
use crate::smtp_sink;

use hostile_kit::{authed, body_of, codes, has_bare_newline, outbox_files, start_outbox, to_sink};
use proptest::strategy::{Strategy, ValueTree};
use relay::Relay;
use smtp_sink::Sink;
use std::time::Duration;

/// The payloads of the SMTP smuggling research (SEC Consult, 2023) and its follow-ups: each
/// pretends to end the data so that what follows is read as commands.
const VECTORS: &[(&str, &[u8])] = &[
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CRLF NUL.CRLF", b"\r\n\x00.\r\n"),
];

/// What an attacker appends after a fake end: a whole second transaction to another
/// recipient, with a forged From.
const SMUGGLED: &[u8] = b"MAIL FROM:<app@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: ceo@example.com\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n";

/// One connection: the message with the payload inside, the real end, QUIT. Returns the
/// replies that came after DATA's 354 (read until the relay closes).
async fn send_with_payload(relay: &Relay, name: &str, payload: &[u8]) -> String {
    let mut c = authed(relay.plain).await;
    assert_eq!(c.cmd("MAIL FROM:<app@example.com>").await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    let mut data = format!(
        "From: App <app@example.com>\r\nTo: a@example.net\r\nSubject: vector {name}\r\n\r\nfirst part"
    )
    .into_bytes();
    data.extend_from_slice(payload);
    data.extend_from_slice(SMUGGLED);
    data.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
    c.write(&data).await;
    let mut transcript = String::new();
    for _ in 0..10 {
        let r = c.read_reply().await;
        if r.code == 0 {
            break;
        }
        transcript.push_str(&format!("{} {}\r\n", r.code, r.text));
    }
    transcript
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_payloads_never_split_a_message() {
    let sink = Sink::start(None).await;
    let relay = Relay::start(&to_sink(sink.addr.port(), ""));
    for (name, payload) in VECTORS {
        let transcript = send_with_payload(&relay, name, payload).await;
        // One 250 for the one message, then 221: no 354 or 250 for smuggled commands.
        assert_eq!(codes(&transcript), vec![250, 221], "{name}: {transcript}");
        assert!(transcript.contains("queued as"), "{name}: {transcript}");
    }
    sink.wait_for(VECTORS.len(), Duration::from_secs(20)).await;
    // Give a second message (if any were split off) time to arrive too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = sink.messages();
    assert_eq!(got.len(), VECTORS.len(), "relay log:\n{}", relay.log());
    for m in &got {
        let text = String::from_utf8_lossy(&m.data);
        assert_eq!(m.recipients, ["a@example.net"], "{text}");
        assert_eq!(m.sender, "app@example.com");
        assert!(
            !has_bare_newline(&m.data),
            "bare CR/LF delivered: {:?}",
            m.data
        );
        // The smuggled "transaction" is inside the one message, as content.
        let body = String::from_utf8_lossy(body_of(&m.data));
        assert!(body.contains("RCPT TO:<victim@example.net>"), "{text}");
        assert!(body.ends_with("smuggled body\r\n\r\n"), "{text}");
        let headers = &text[..text.len() - body.len()];
        assert_eq!(headers.matches("\r\nFrom: ").count(), 1, "{text}");
        assert!(
            headers.contains("\r\nFrom: App <app@example.com>\r\n"),
            "{text}"
        );
    }
    for (name, _) in VECTORS {
        assert!(
            got.iter()
                .any(|m| String::from_utf8_lossy(&m.data).contains(&format!("vector {name}\r\n"))),
            "{name} missing"
        );
    }
    assert_eq!(relay.queued(), 0, "all delivered");
}

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_payloads_are_refused_with_bare_newlines_reject() {
    let sink = Sink::start(None).await;
    let relay = Relay::start(&to_sink(sink.addr.port(), "  bare_newlines: reject\n"));
    let mut accepted = 0;
    for (name, payload) in VECTORS {
        let transcript = send_with_payload(&relay, name, payload).await;
        if payload.contains(&0) {
            // CRLF NUL . CRLF has no bare line break: one ordinary (odd) message.
            assert_eq!(codes(&transcript), vec![250, 221], "{name}: {transcript}");
            accepted += 1;
        } else {
            assert_eq!(codes(&transcript), vec![554, 221], "{name}: {transcript}");
            assert!(transcript.contains("554 5.6.0"), "{name}: {transcript}");
            assert!(transcript.contains("bare CR or LF"), "{name}: {transcript}");
        }
    }
    sink.wait_for(accepted, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), accepted, "{:?}", sink.messages());
    assert_eq!(relay.queued(), 0);
}

/// BDAT counts bytes, so a fake end inside a chunk is content; the session goes on normally.
#[tokio::test(flavor = "multi_thread")]
async fn smuggling_inside_bdat_is_content() {
    let sink = Sink::start(None).await;
    let relay = Relay::start(&to_sink(sink.addr.port(), ""));
    let mut c = authed(relay.plain).await;
    let mut chunk = b"From: app@example.com\r\nSubject: bdat\r\n\r\nhi\r\n.\r\n".to_vec();
    chunk.extend_from_slice(SMUGGLED);
    let mut wire = format!(
        "MAIL FROM:<app@example.com>\r\nRCPT TO:<a@example.net>\r\nBDAT {} LAST\r\n",
        chunk.len()
    )
    .into_bytes();
    wire.extend_from_slice(&chunk);
    wire.extend_from_slice(b"QUIT\r\n");
    c.write(&wire).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.read_reply().await.code);
    }
    assert_eq!(got, vec![250, 250, 250, 221]);
    let msgs = sink.wait_for(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(sink.messages().len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].recipients, ["a@example.net"]);
    assert!(String::from_utf8_lossy(&msgs[0].data).contains("smuggled body"));
}

/// For random bodies (CR, LF, '.', NUL and 8-bit bytes in any order), what the client means
/// — its bytes, bare line breaks made CRLF — is exactly what is signed and delivered.
#[tokio::test(flavor = "multi_thread")]
async fn random_bodies_arrive_as_their_normalised_bytes() {
    const CASES: usize = 24;
    let relay = start_outbox("", "");
    let byte = proptest::prop_oneof![
        4 => proptest::strategy::Just(b'\r'),
        4 => proptest::strategy::Just(b'\n'),
        4 => proptest::strategy::Just(b'.'),
        1 => proptest::strategy::Just(0u8),
        3 => proptest::strategy::Just(b'a'),
        1 => proptest::arbitrary::any::<u8>(),
    ];
    let strategy = proptest::collection::vec(byte, 0..200);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let bodies: Vec<Vec<u8>> = (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).expect("value").current())
        .collect();
    let mut c = authed(relay.plain).await;
    for (i, body) in bodies.iter().enumerate() {
        let mut message =
            format!("From: app@example.com\r\nSubject: case {i}\r\n\r\n").into_bytes();
        message.extend_from_slice(body);
        let r = c
            .send("app@example.com", &["a@example.net"], &message)
            .await;
        assert_eq!(r.code, 250, "case {i} {body:?}: {r:?}");
    }
    c.cmd("QUIT").await;
    let files = outbox_files(&relay, CASES, Duration::from_secs(20)).await;
    assert_eq!(files.len(), CASES);
    for (i, body) in bodies.iter().enumerate() {
        let tag = format!("\r\nSubject: case {i}\r\n");
        let file = files
            .iter()
            .find(|f| String::from_utf8_lossy(f).contains(&tag))
            .unwrap_or_else(|| panic!("case {i} not in the outbox"));
        let mut want = dkim_relay::smtp::data::normalize(body);
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            // The client's own CRLF before the final dot.
            want.extend_from_slice(b"\r\n");
        }
        assert_eq!(body_of(file), &want[..], "case {i}: sent {body:?}");
        assert!(!has_bare_newline(file), "case {i}");
    }
}

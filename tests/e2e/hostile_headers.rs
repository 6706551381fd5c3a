//! Header attacks against the real binary: several From fields, a From with several
//! mailboxes, addresses hidden in display names and comments, duplicated singleton fields,
//! folding tricks (including a bare CR that becomes a line break), NUL bytes, non-ASCII names
//! and values with and without SMTPUTF8. Each case gets its exact reply; only the accepted
//! ones reach the outbox, byte for byte.

use crate::hostile_kit;

use hostile_kit::{authed, outbox_files, start_outbox};
use std::time::Duration;

/// (what, header section, expected code, status, words in the reply). Each message gets an
/// `X-Case: N` field after the section and a body.
const CASES: &[(&str, &[u8], u16, &str, &str)] = &[
    (
        "two From",
        b"From: app@example.com\r\nFrom: ceo@example.com\r\n",
        554,
        "5.6.0",
        "exactly one From",
    ),
    (
        "From in any case",
        b"From: app@example.com\r\nFROM: ceo@example.com\r\n",
        554,
        "5.6.0",
        "exactly one From",
    ),
    (
        "no From",
        b"To: a@example.net\r\n",
        554,
        "5.6.0",
        "exactly one From",
    ),
    (
        "two mailboxes",
        b"From: app@example.com, ceo@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "group",
        b"From: friends: app@example.com;\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "quoted address as name",
        b"From: \"app@example.com\" <ceo@evil.test>\r\n",
        550,
        "5.7.1",
        "not allowed",
    ),
    (
        "bare address as name",
        b"From: app@example.com <ceo@evil.test>\r\n",
        550,
        "5.7.1",
        "not allowed",
    ),
    (
        "address in comment",
        b"From: ceo@evil.test (app@example.com)\r\n",
        550,
        "5.7.1",
        "not allowed",
    ),
    (
        "encoded-word name",
        b"From: =?utf-8?q?app@example.com?= <ceo@evil.test>\r\n",
        550,
        "5.7.1",
        "not allowed",
    ),
    (
        "evil name, real address",
        b"From: \"ceo@evil.test\" <app@example.com>\r\n",
        250,
        "2.0.0",
        "queued",
    ),
    (
        "quoted local part",
        b"From: \"app@example.com\"@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "two at signs",
        b"From: app@example.com@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "source route",
        b"From: <@evil.test:app@example.com>\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "unclosed angle",
        b"From: App <app@example.com\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "unclosed comment",
        b"From: app@example.com (ceo@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "folded second address",
        b"From: app@example.com\r\n <ceo@evil.test>\r\n",
        554,
        "5.6.0",
        "exactly one mailbox",
    ),
    (
        "folded From",
        b"From:\r\n App\r\n <app@example.com>\r\n",
        250,
        "2.0.0",
        "queued",
    ),
    (
        "From inside a folded field",
        b"From: app@example.com\r\nX-Note: a\r\n\tFrom: ceo@evil.test\r\n",
        250,
        "2.0.0",
        "queued",
    ),
    (
        "space before colon",
        b"From: app@example.com\r\nFrom : ceo@evil.test\r\n",
        554,
        "5.6.0",
        "invalid field name",
    ),
    (
        "leading continuation",
        b" From: ceo@evil.test\r\nFrom: app@example.com\r\n",
        554,
        "5.6.0",
        "continuation",
    ),
    (
        "no colon",
        b"From: app@example.com\r\nFrom ceo@evil.test\r\n",
        554,
        "5.6.0",
        "no colon",
    ),
    (
        "bare CR makes a second From",
        b"From: app@example.com\r\nX-A: a\rFrom: ceo@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one From",
    ),
    (
        "bare LF makes a second From",
        b"From: app@example.com\r\nX-A: a\nFrom: ceo@evil.test\r\n",
        554,
        "5.6.0",
        "exactly one From",
    ),
    (
        "NUL in a value",
        b"From: app@example.com\r\nX-A: a\0b\r\n",
        554,
        "5.6.0",
        "NUL",
    ),
    (
        "NUL in From",
        b"From: app@example.com\0ceo@evil.test\r\n",
        554,
        "5.6.0",
        "NUL",
    ),
    (
        "non-ASCII name",
        b"From: app@example.com\r\nS\xc3\xbcbject: x\r\n",
        554,
        "5.6.0",
        "invalid field name",
    ),
    (
        "UTF-8 value",
        b"From: J\xc3\xb6rg <app@example.com>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n",
        250,
        "2.0.0",
        "queued",
    ),
    (
        "Latin-1 value",
        b"From: app@example.com\r\nSubject: caf\xe9\r\n",
        250,
        "2.0.0",
        "queued",
    ),
    (
        "Latin-1 in From",
        b"From: Jos\xe9 <app@example.com>\r\n",
        554,
        "5.6.0",
        "not valid UTF-8",
    ),
    (
        "non-ASCII address",
        b"From: j\xc3\xb6rg@example.com\r\n",
        554,
        "5.6.0",
        "SMTPUTF8",
    ),
    (
        "line of 999",
        b"From: app@example.com\r\nX-Long: LONG999\r\n",
        554,
        "5.6.0",
        "longer than 998",
    ),
];

/// Duplicates of every singleton other than From.
const SINGLETONS: &[&str] = &[
    "Date",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
];

#[tokio::test(flavor = "multi_thread")]
async fn header_attacks_are_refused_or_handled_deliberately() {
    let relay = start_outbox("  idle_timeout: 10s\n", "");
    let mut c = authed(relay.plain).await;
    let mut accepted = Vec::new();
    for (i, (what, section, code, status, words)) in CASES.iter().enumerate() {
        let long = format!("X-Long: {}", "y".repeat(991));
        let section = if section.windows(7).any(|w| w == b"LONG999") {
            format!("From: app@example.com\r\n{long}\r\n").into_bytes()
        } else {
            section.to_vec()
        };
        let mut msg = section.clone();
        msg.extend_from_slice(format!("X-Case: {i}\r\n\r\nbody of case {i}\r\n").as_bytes());
        let r = c.send("app@example.com", &["a@example.net"], &msg).await;
        assert_eq!(r.code, *code, "{what}: {r:?}");
        assert!(r.text.starts_with(status), "{what}: {r:?}");
        assert!(r.text.contains(words), "{what}: {r:?} should say {words}");
        if *code == 250 {
            accepted.push((i, msg));
        }
    }
    for (i, name) in SINGLETONS.iter().enumerate() {
        let msg = format!(
            "From: app@example.com\r\n{name}: one\r\n{}: two\r\n\r\nbody\r\n",
            name.to_ascii_lowercase()
        );
        let r = c
            .send("app@example.com", &["a@example.net"], msg.as_bytes())
            .await;
        assert_eq!(r.code, 554, "{name} ({i}): {r:?}");
        assert_eq!(
            r.text,
            format!("5.6.0 Duplicate {name} header field"),
            "{r:?}"
        );
    }
    // With SMTPUTF8, an internationalised address in our domain is fine.
    assert_eq!(
        c.cmd("MAIL FROM:<app@example.com> SMTPUTF8").await.code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<a@example.net>").await.code, 250);
    let eai = "From: J\u{f6}rg <j\u{f6}rg@example.com>\r\nX-Case: eai\r\n\r\nhi\r\n";
    let r = c.data(eai.as_bytes()).await;
    assert_eq!(r.code, 250, "{r:?}");
    accepted.push((usize::MAX, eai.as_bytes().to_vec()));

    // Exactly the accepted ones were delivered, each header field byte for byte.
    let files = outbox_files(&relay, accepted.len(), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        outbox_files(&relay, 0, Duration::ZERO).await.len(),
        accepted.len()
    );
    for (i, msg) in &accepted {
        let head_end = msg
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("blank line")
            + 2;
        let head = &msg[..head_end];
        assert!(
            files
                .iter()
                .any(|f| f.windows(head.len()).any(|w| w == head)),
            "case {i}: header section not delivered byte for byte: {:?}",
            String::from_utf8_lossy(head)
        );
    }
}

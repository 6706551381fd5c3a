//! Delivery status notifications (RFC 3464): a multipart/report sent from `<>` to the envelope
//! sender, naming each recipient with the remote reply, with the original header section —
//! for recipients that failed for good (`Action: failed`) or, once, for recipients still being
//! retried after `delivery.delay_warning` (`Action: delayed`).

use crate::spool::StoredMessage;
use std::io::Read;

/// One recipient to report, with the reply (or local finding) that explains it.
pub struct Failure<'a> {
    pub recipient: &'a str,
    pub reply: &'a str,
    /// Given up at `delivery.max_age` after this many attempts (the reply was temporary).
    pub expired_after: Option<u32>,
}

impl Failure<'_> {
    /// The reply as the text part tells it.
    fn told(&self) -> String {
        match self.expired_after {
            Some(n) => format!("gave up after {n} attempts: {}", self.reply),
            None => self.reply.to_string(),
        }
    }
}

/// What the report says about its recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failed,
    /// Still being retried, until this Unix time.
    Delayed {
        retry_until: i64,
    },
}

/// The message a report is about.
pub struct About<'a> {
    pub hostname: &'a str,
    pub queue_id: &'a str,
    /// The envelope sender, who gets the report.
    pub sender: &'a str,
    /// When the relay accepted it (Unix time).
    pub arrived: i64,
    /// The stored message, for its header section.
    pub original: &'a StoredMessage,
}

/// Build the DSN message (header section and body), CRLF throughout.
pub fn build(about: &About<'_>, kind: Kind, failures: &[Failure<'_>], now_unix: i64) -> Vec<u8> {
    let (hostname, queue_id, sender) = (about.hostname, about.queue_id, about.sender);
    let boundary = format!("{queue_id}/{hostname}");
    let date = crate::smtp::date::rfc5322_date(now_unix);
    let (subject, id_part, intro) = match kind {
        Kind::Failed => (
            "Undelivered Mail Returned to Sender",
            "dsn",
            "Your message could not be delivered to the following recipients:",
        ),
        Kind::Delayed { .. } => (
            "Delayed Mail (still being retried)",
            "delay",
            "Your message has not been delivered yet to the following recipients. This is only a \
             warning: nothing needs to be done, delivery is still being tried.",
        ),
    };
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!(
        "Message-ID: <{queue_id}.{id_part}@{hostname}>\r\n"
    ));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"));
    m.push_str("\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    m.push_str(&format!(
        "This is the mail system at {hostname}.\r\n\r\n{intro}\r\n\r\n"
    ));
    for f in failures {
        m.push_str(&format!("<{}>: {}\r\n", f.recipient, clean(&f.told())));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Queue-ID: {queue_id}\r\nArrival-Date: {}\r\n",
        crate::smtp::date::rfc5322_date(about.arrived)
    ));
    for f in failures {
        let (remote, expired) = (f.reply, f.expired_after.is_some());
        let status = if expired {
            // RFC 3463 X.4.7: delivery time expired.
            "4.4.7".to_string()
        } else if let Kind::Delayed { .. } = kind {
            // A temporary condition by definition: keep the reply's detail, class 4.
            let s = status_of(remote);
            format!("4{}", s.get(1..).unwrap_or(".0.0"))
        } else {
            status_of(remote)
        };
        let action = match kind {
            Kind::Failed => "failed",
            Kind::Delayed { .. } => "delayed",
        };
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {status}\r\n",
            f.recipient
        ));
        let diagnostic_type = if remote.starts_with(|c: char| c.is_ascii_digit()) {
            "smtp"
        } else {
            "x-local"
        };
        m.push_str(&format!(
            "Diagnostic-Code: {diagnostic_type}; {}\r\n",
            clean(remote)
        ));
        if expired {
            m.push_str(&format!("X-Dkim-Relay-Note: {}\r\n", clean(&f.told())));
        }
        if let Kind::Delayed { retry_until } = kind {
            m.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                crate::smtp::date::rfc5322_date(retry_until)
            ));
        }
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(&original_headers(about.original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The enhanced status code (RFC 3463) for a failure: the remote reply's own, else one for our
/// local findings (null MX, no such domain, no address), else a generic permanent failure.
fn status_of(reply: &str) -> String {
    let is_code = |s: &&str| {
        s.split('.').count() == 3
            && s.split('.')
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(code) = reply.split_whitespace().nth(1).filter(is_code) {
        return code.to_string();
    }
    if reply.contains("null MX") {
        // RFC 7505 section 4.2.
        "5.1.10".into()
    } else if reply.contains("no such domain") {
        "5.1.2".into()
    } else if reply.contains("has no address") {
        "5.4.4".into()
    } else {
        "5.0.0".into()
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// The header section of the stored message (bounded).
fn original_headers(message: &StoredMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = message.open() {
        let _ = f.take(256 * 1024).read_to_end(&mut buf);
    }
    let end = memchr::memmem::find(&buf, b"\r\n\r\n").map_or(buf.len(), |p| p + 2);
    buf.truncate(end);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_for_remote_and_local_failures() {
        assert_eq!(status_of("550 5.1.1 no such user"), "5.1.1");
        assert_eq!(status_of("550 mailbox unavailable"), "5.0.0");
        assert_eq!(
            status_of("x.test does not accept mail (null MX, RFC 7505)"),
            "5.1.10"
        );
        assert_eq!(status_of("x.test: no such domain"), "5.1.2");
        assert_eq!(status_of("mx.x.test has no address"), "5.4.4");
    }

    #[test]
    fn an_expired_recipient_shows_the_last_remote_reply() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"Subject: hi\r\nFrom: a@example.com\r\n\r\nbody\r\n";
        let original = StoredMessage {
            path: dir.path().join("m"),
            len: bytes.len() as u64,
        };
        std::fs::write(&original.path, bytes).unwrap();
        let reply = "451 4.2.0 busy";
        let about = About {
            hostname: "relay.test",
            queue_id: "Q1",
            sender: "a@example.com",
            arrived: 0,
            original: &original,
        };
        let failures = [Failure {
            recipient: "b@example.net",
            reply,
            expired_after: Some(3),
        }];
        let out = build(&about, Kind::Failed, &failures, 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Status: 4.4.7\r\n"), "{text}");
        assert!(
            text.contains("Diagnostic-Code: smtp; 451 4.2.0 busy\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Subject: hi\r\nFrom: a@example.com\r\n"),
            "{text}"
        );
        assert!(!text.contains("body"), "{text}");
        assert!(
            text.contains("<b@example.net>: gave up after 3 attempts: 451 4.2.0 busy\r\n"),
            "{text}"
        );

        let busy = "451 4.2.0 busy";
        let failures = [Failure {
            recipient: "b@example.net",
            reply: busy,
            expired_after: None,
        }];
        let out = build(
            &about,
            Kind::Delayed {
                retry_until: 86_400,
            },
            &failures,
            0,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Action: delayed\r\nStatus: 4.2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Will-Retry-Until: "), "{text}");
        assert!(text.contains("Message-ID: <Q1.delay@relay.test>"), "{text}");
    }
}

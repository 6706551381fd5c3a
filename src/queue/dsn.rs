//! Delivery status notifications (RFC 3464): a multipart/report sent from `<>` to the envelope
//! sender, naming each failed recipient with the remote reply, with the original header section.

use std::io::Read;
use std::path::Path;

/// One failed recipient.
pub struct Failure<'a> {
    pub recipient: &'a str,
    pub reply: &'a str,
}

/// Build the DSN message (header section and body), CRLF throughout.
pub fn build(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    failures: &[Failure<'_>],
    original: &Path,
    now_unix: i64,
) -> Vec<u8> {
    let boundary = format!("{queue_id}/{hostname}");
    let date = crate::dkim::fixups::rfc5322_date(now_unix);
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Date: {date}\r\n"));
    m.push_str(&format!("Message-ID: <{queue_id}.dsn@{hostname}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"));
    m.push_str("\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    m.push_str(&format!("This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to the following recipients:\r\n\r\n"));
    for f in failures {
        m.push_str(&format!("<{}>: {}\r\n", f.recipient, clean(f.reply)));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Queue-ID: {queue_id}\r\nArrival-Date: {date}\r\n"
    ));
    for f in failures {
        let status = status_of(f.reply);
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\n",
            f.recipient
        ));
        if f.reply.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            m.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", clean(f.reply)));
        } else {
            m.push_str(&format!("Diagnostic-Code: x-local; {}\r\n", clean(f.reply)));
        }
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(&original_headers(original));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The enhanced status code in a reply, or a generic permanent failure.
fn status_of(reply: &str) -> String {
    reply
        .split_whitespace()
        .nth(1)
        .filter(|s| {
            s.split('.').count() == 3
                && s.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| "5.0.0".into())
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// The header section of the stored message (bounded).
fn original_headers(path: &Path) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(256 * 1024).read_to_end(&mut buf);
    }
    let end = memchr::memmem::find(&buf, b"\r\n\r\n").map_or(buf.len(), |p| p + 2);
    buf.truncate(end);
    buf
}

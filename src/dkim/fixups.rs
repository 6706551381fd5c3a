//! Header fix-ups before signing (RFC 6409 8): remove Bcc, add Date and Message-ID when
//! missing, and the Received field the relay prepends. Every other field stays byte for byte
//! and in its order.

use crate::smtp::date::rfc5322_date;
use crate::smtp::header::Field;

/// What the fix-ups need to know about the submission.
pub struct Context<'a> {
    pub hostname: &'a str,
    pub queue_id: &'a str,
    pub now_unix: i64,
}

/// The header section to sign and send: the client's fields minus Bcc, plus Date and
/// Message-ID at the end when missing.
pub fn fix_header_section(fields: &[Field<'_>], ctx: &Context<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.raw.len()).sum::<usize>() + 128);
    let mut has_date = false;
    let mut has_message_id = false;
    for f in fields {
        if f.is("Bcc") {
            continue;
        }
        has_date |= f.is("Date");
        has_message_id |= f.is("Message-ID");
        out.extend_from_slice(f.raw);
    }
    if !has_date {
        out.extend_from_slice(format!("Date: {}\r\n", rfc5322_date(ctx.now_unix)).as_bytes());
    }
    if !has_message_id {
        out.extend_from_slice(format!("Message-ID: {}\r\n", message_id(ctx)).as_bytes());
    }
    out
}

/// A Message-ID unique to this message and host.
pub fn message_id(ctx: &Context<'_>) -> String {
    let nonce: u32 = rand::random();
    format!("<{}.{:08x}@{}>", ctx.queue_id, nonce, ctx.hostname)
}

/// What the Received field records about the submission.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    /// ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848).
    pub protocol: &'a str,
    /// Named only when the message has a single recipient (more would leak Bcc recipients).
    pub single_recipient: Option<&'a str>,
}

/// The Received field (RFC 5321 4.4), folded so no line comes near the 998-byte limit.
pub fn received(trace: &Trace<'_>, ctx: &Context<'_>) -> Vec<u8> {
    // The HELO name is the client's: keep only characters that cannot break the field.
    let helo: String = trace
        .helo
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        .take(255)
        .collect();
    let helo = if helo.is_empty() {
        "unknown".to_string()
    } else {
        helo
    };
    let mut s = format!("Received: from {helo}");
    match trace.client_ip {
        Some(ip) => s.push_str(&format!(" ([{ip}])")),
        None => s.push_str(" (local)"),
    }
    s.push_str(&format!(
        "\r\n\tby {} (dkim-relay) with {} id {}",
        ctx.hostname, trace.protocol, ctx.queue_id
    ));
    if let Some(rcpt) = trace.single_recipient {
        if rcpt.len() < 320 && !rcpt.contains(['\r', '\n', '>']) {
            s.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
    }
    s.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(ctx.now_unix)));
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::header::parse_fields;

    #[test]
    fn removes_bcc_and_appends_missing_fields() {
        let section =
            b"From: a@example.com\r\nBcc: hidden@x.test\r\nbcc: h2@x.test\r\nSubject: s\r\n";
        let fields = parse_fields(section).unwrap();
        let ctx = Context {
            hostname: "relay.test",
            queue_id: "Q1",
            now_unix: 0,
        };
        let out = String::from_utf8(fix_header_section(&fields, &ctx)).unwrap();
        assert!(
            out.starts_with("From: a@example.com\r\nSubject: s\r\nDate: Thu, 1 Jan 1970"),
            "{out}"
        );
        assert!(out.contains("\r\nMessage-ID: <Q1."), "{out}");
        assert!(!out.to_ascii_lowercase().contains("bcc"));
    }

    #[test]
    fn received_is_safe_against_hostile_helo() {
        let ctx = Context {
            hostname: "relay.test",
            queue_id: "Q1",
            now_unix: 0,
        };
        let t = Trace {
            helo: "evil\r\nFrom: x",
            client_ip: None,
            protocol: "ESMTP",
            single_recipient: None,
        };
        let r = String::from_utf8(received(&t, &ctx)).unwrap();
        assert!(
            r.starts_with("Received: from evilFrom:x (local)\r\n\tby relay.test"),
            "{r}"
        );
    }
}

//! Header fix-ups before signing (RFC 6409 8): remove Bcc, add Date and Message-ID when
//! missing, and the Received field the relay prepends. Every other field stays byte for byte
//! and in its order.

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

/// `Mon, 23 Nov 2026 06:50:00 +0000`.
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01: the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::header::parse_fields;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_416_600),
            "Mon, 23 Nov 2026 06:50:00 +0000"
        );
    }

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

//! A TLS report as a message to a `mailto:` destination (RFC 8460 5.3): from the relay's
//! postmaster, `Subject: Report Domain: D Submitter: S Report-ID: <id>`, the
//! `TLS-Report-Domain` and `TLS-Report-Submitter` fields (which the DKIM signature must
//! cover), `TLS-Required: No` (RFC 8689: a report about TLS trouble must get through it), and a
//! `multipart/report; report-type="tlsrpt"` body: a short text, then the gzip'd JSON as an
//! `application/tlsrpt+gzip` attachment. Lines are CRLF, folded where a field could grow long.

use super::json::{filename, Report, Submitter, MEDIA_TYPE};
use super::store::Day;
use base64::Engine as _;

/// Header fields the DKIM signature of a report must also cover (5.3).
pub const SIGNED_FIELDS: [&str; 2] = ["TLS-Report-Domain", "TLS-Report-Submitter"];

/// The report's envelope and bytes.
pub struct ReportMessage {
    /// The envelope sender: null, so a report that cannot be delivered bounces nowhere.
    pub sender: String,
    pub recipient: String,
    pub bytes: Vec<u8>,
}

/// The message carrying `report` (about `domain` on `day`) to `recipient`.
pub fn build(
    submitter: &Submitter,
    day: Day,
    domain: &str,
    report: &Report,
    recipient: &str,
    now: i64,
) -> ReportMessage {
    let host = &submitter.hostname;
    let file = filename(host, day, domain);
    let boundary = format!("tlsrpt-{:016x}", rand::random::<u64>());
    let mut m = String::with_capacity(4096);
    let mut field = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(value);
        m.push_str("\r\n");
    };
    field("From", &format!("<postmaster@{host}>"));
    field("To", &format!("<{recipient}>"));
    field(
        "Subject",
        &format!(
            "Report Domain: {domain}\r\n Submitter: {host}\r\n Report-ID: <{}>",
            report.report_id
        ),
    );
    field("Date", &crate::smtp::date::rfc5322_date(now));
    field(
        "Message-ID",
        &format!("<tlsrpt.{day}.{:08x}@{host}>", rand::random::<u32>()),
    );
    field("MIME-Version", "1.0");
    field(SIGNED_FIELDS[0], domain);
    field(SIGNED_FIELDS[1], host);
    field("TLS-Required", "No");
    field(
        "Content-Type",
        &format!("multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{boundary}\""),
    );
    m.push_str("\r\n");
    m.push_str("This is a multi-part message in MIME format.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n\
         This is an SMTP TLS report (RFC 8460) for {domain},\r\n\
         covering {day} (UTC), from {host}.\r\n\
         The report is attached as gzip'd JSON.\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: {MEDIA_TYPE};\r\n\tname=\"{file}\"\r\n\
         Content-Disposition: attachment;\r\n\tfilename=\"{file}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    ));
    let encoded = base64::engine::general_purpose::STANDARD.encode(report.gzip());
    for line in encoded.as_bytes().chunks(76) {
        m.push_str(&String::from_utf8_lossy(line));
        m.push_str("\r\n");
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    ReportMessage {
        sender: String::new(),
        recipient: recipient.to_string(),
        bytes: m.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_message_parses_back() {
        let day = Day::parse("2026-11-23").unwrap();
        let submitter = Submitter {
            organization: "Example Inc.".into(),
            contact: "postmaster@example.com".into(),
            hostname: "relay.example.com".into(),
        };
        let report = Report::build(&submitter, day, "b.example", &[]);
        let msg = build(
            &submitter,
            day,
            "b.example",
            &report,
            "tls@b.example",
            1_795_416_600,
        );
        assert_eq!(msg.sender, "");
        let text = String::from_utf8(msg.bytes.clone()).unwrap();
        assert!(text.lines().all(|l| l.len() <= 78), "{text}");
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        let parsed = mail_parser::MessageParser::default()
            .parse(&msg.bytes)
            .unwrap();
        assert_eq!(
            parsed.headers().subject(),
            Some("Report Domain: b.example Submitter: relay.example.com Report-ID: <20261123.b.example@relay.example.com>")
        );
        assert!(text.contains("\r\nTLS-Report-Domain: b.example\r\n"));
        assert!(text.contains("\r\nTLS-Report-Submitter: relay.example.com\r\n"));
        let attachment = parsed.attachments().next().unwrap();
        assert_eq!(
            attachment.attachment_name(),
            Some(filename("relay.example.com", day, "b.example").as_str())
        );
        assert!(attachment.is_content_type("application", "tlsrpt+gzip"));
        let mut json = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&attachment.decoded()[..]),
            &mut json,
        )
        .unwrap();
        assert_eq!(json, report.to_json());
    }
}

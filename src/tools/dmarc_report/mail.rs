//! The reports in one e-mail message, as receivers send them to the `rua` address: every MIME
//! part (nested multiparts and forwarded messages included, base64 or quoted-printable decoded
//! by mail-parser) whose content is a report — gzip or zip by its magic bytes, XML by its
//! text — whatever its Content-Type says (Microsoft sends gzip as
//! `application/octet-stream`, others `application/gzip`, `application/zip`, `text/xml`).
//! A message with no such part is not a report message; a part that is not a DMARC report
//! (a newsletter's HTML, a zip of photos) is passed over, not an error.

use super::input::{load_attachment, InputError, Loaded};
use super::parse::ParseError;
use mail_parser::MessageParser;

/// The reports in `raw`, or `None` when it holds no report (ordinary mail).
pub fn reports_in_message(label: &str, raw: &[u8]) -> Option<Vec<Loaded>> {
    let message = MessageParser::new().parse(raw)?;
    let mut out = Vec::new();
    for (index, part) in message.parts().enumerate() {
        if part.is_multipart() || part.is_message() {
            continue;
        }
        let body = part.decoded();
        if !may_be_report(&body) {
            continue;
        }
        let name = part
            .attachment_name()
            .map(printable)
            .unwrap_or_else(|| format!("part {}", index + 1));
        for loaded in load_attachment(&format!("{label} ({name})"), &body) {
            if !matches!(
                loaded.report,
                Err(InputError::Parse(ParseError::NotAReport(_)))
            ) {
                out.push(loaded);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// gzip, zip, or text that starts with markup (after a byte order mark and white space).
fn may_be_report(body: &[u8]) -> bool {
    let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    body.starts_with(&[0x1f, 0x8b])
        || body.starts_with(b"PK\x03\x04")
        || body.starts_with(b"PK\x05\x06")
        || body.starts_with(&[0xff, 0xfe])
        || body.starts_with(&[0xfe, 0xff])
        || text.trim_ascii_start().starts_with(b"<")
}

/// A name from a message, fit for one line of a terminal: control characters replaced, at
/// most 80 characters.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(80)
        .collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

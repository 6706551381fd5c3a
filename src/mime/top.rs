//! The message's own MIME fields: what its body is (Content-Type, Content-Transfer-Encoding
//! of the header section), and the fields that change when its body is re-encoded as a
//! whole. Only these fields change; every other one stays byte for byte and in its place.

use super::fields::{ContentType, Encoding};
use super::walk::QP_FIELD;
use crate::smtp::header::Field;

/// The Content-Type (`None`: absent or unreadable, so text/plain) and the
/// Content-Transfer-Encoding of a message, from its header fields.
pub fn body_type(fields: &[Field<'_>]) -> (Option<ContentType>, Encoding) {
    let content_type = fields
        .iter()
        .find(|f| f.is("Content-Type"))
        .and_then(|f| ContentType::parse(f.value()));
    let encoding = fields
        .iter()
        .find(|f| f.is("Content-Transfer-Encoding"))
        .map_or(Encoding::SevenBit, |f| Encoding::parse(f.value()));
    (content_type, encoding)
}

/// The header section of a message whose body became quoted-printable: its
/// Content-Transfer-Encoding field says so (in the place of the first one; a second is
/// dropped), and a message without MIME fields gets `MIME-Version: 1.0` and a
/// `Content-Type: text/plain` (with `charset=utf-8` when the body held 8-bit text) at the end.
pub fn quoted_printable_section(fields: &[Field<'_>], eight_bit: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.raw.len()).sum::<usize>() + 128);
    let mut replaced = false;
    for f in fields {
        if f.is("Content-Transfer-Encoding") {
            if !replaced {
                out.extend_from_slice(QP_FIELD);
                replaced = true;
            }
            continue;
        }
        out.extend_from_slice(f.raw);
    }
    if !fields.iter().any(|f| f.is("MIME-Version")) {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    if !fields.iter().any(|f| f.is("Content-Type")) {
        out.extend_from_slice(if eight_bit {
            b"Content-Type: text/plain; charset=utf-8\r\n".as_slice()
        } else {
            b"Content-Type: text/plain\r\n".as_slice()
        });
    }
    if !replaced {
        out.extend_from_slice(QP_FIELD);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::header::parse_fields;

    #[test]
    fn only_the_named_fields_change() {
        let section = b"From: a@example.com\r\nContent-Transfer-Encoding: 8BIT (raw)\r\nX-A: b\r\nMIME-Version: 1.0\r\nContent-Type: text/html;\r\n charset=utf-8\r\n";
        let fields = parse_fields(section).unwrap();
        let (ct, enc) = body_type(&fields);
        assert_eq!(ct.unwrap().mime_type, "text/html");
        assert_eq!(enc, Encoding::EightBit);
        assert_eq!(
            quoted_printable_section(&fields, true),
            b"From: a@example.com\r\nContent-Transfer-Encoding: quoted-printable\r\nX-A: b\r\nMIME-Version: 1.0\r\nContent-Type: text/html;\r\n charset=utf-8\r\n"
        );
    }

    #[test]
    fn a_message_without_mime_fields_gets_them() {
        let section = b"From: a@example.com\r\nSubject: x\r\n";
        let fields = parse_fields(section).unwrap();
        assert_eq!(
            quoted_printable_section(&fields, false),
            b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        );
    }
}

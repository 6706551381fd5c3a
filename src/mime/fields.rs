//! The two MIME header fields that decide how a part's body is read (RFC 2045 5, 6; RFC 2046
//! 5.1.1): Content-Type (type, subtype, the boundary of a multipart) and
//! Content-Transfer-Encoding, as real mail writes them: folded, in any case, with comments
//! (`7bit (ascii only)`), quoted or unquoted parameter values, stray white space.

/// A part's Content-Transfer-Encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// `7bit`, or no field at all (RFC 2045 6.1 default).
    SevenBit,
    EightBit,
    Binary,
    QuotedPrintable,
    Base64,
    /// Anything else (`x-uuencode`...): its bytes mean something we cannot re-encode.
    Other(String),
}

impl Encoding {
    /// The value of a Content-Transfer-Encoding field (after the colon, folding included).
    pub fn parse(value: &[u8]) -> Encoding {
        let text = without_comments(&unfold(value));
        let token = String::from_utf8_lossy(text.trim_ascii()).to_ascii_lowercase();
        match token.as_str() {
            "" | "7bit" => Encoding::SevenBit,
            "8bit" => Encoding::EightBit,
            "binary" => Encoding::Binary,
            "quoted-printable" => Encoding::QuotedPrintable,
            "base64" => Encoding::Base64,
            _ => Encoding::Other(token),
        }
    }

    /// Identity encodings: the bytes are the content, in lines.
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            Encoding::SevenBit | Encoding::EightBit | Encoding::Binary
        )
    }
}

/// What a Content-Type field says, as far as the structure of a message is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// `type/subtype`, lower case.
    pub mime_type: String,
    /// The `boundary` parameter, as written (case matters).
    pub boundary: Option<Vec<u8>>,
}

impl ContentType {
    pub fn text_plain() -> ContentType {
        ContentType {
            mime_type: "text/plain".into(),
            boundary: None,
        }
    }

    pub fn message_rfc822() -> ContentType {
        ContentType {
            mime_type: "message/rfc822".into(),
            boundary: None,
        }
    }

    /// The value of a Content-Type field. `None` when it has no `type/subtype` (RFC 2045 5.2:
    /// then the default applies).
    pub fn parse(value: &[u8]) -> Option<ContentType> {
        let text = without_comments(&unfold(value));
        let mut items = split_outside_quotes(&text, b';').into_iter();
        let first = items.next()?;
        let mime_type = String::from_utf8_lossy(first.trim_ascii()).to_ascii_lowercase();
        let (t, s) = mime_type.split_once('/')?;
        if t.trim().is_empty() || s.trim().is_empty() {
            return None;
        }
        let mime_type = format!("{}/{}", t.trim(), s.trim());
        let mut boundary = None;
        for item in items {
            let Some(eq) = item.iter().position(|b| *b == b'=') else {
                continue;
            };
            let name = item[..eq].trim_ascii();
            if name.eq_ignore_ascii_case(b"boundary") && boundary.is_none() {
                let v = unquote(item[eq + 1..].trim_ascii());
                if !v.is_empty() {
                    boundary = Some(v);
                }
            }
        }
        Some(ContentType {
            mime_type,
            boundary,
        })
    }

    pub fn is_multipart(&self) -> bool {
        self.mime_type.starts_with("multipart/") && self.boundary.is_some()
    }

    pub fn is_text(&self) -> bool {
        self.mime_type.starts_with("text/")
    }

    /// An encapsulated message whose body is itself a message (RFC 2046 5.2.1: never encoded
    /// as a whole, so its own parts are where re-encoding happens).
    pub fn is_message(&self) -> bool {
        self.mime_type == "message/rfc822"
    }
}

/// Folded lines joined (CRLF before white space removed).
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {}
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// RFC 5322 comments removed (nested, with quoted-pairs), quoted strings left alone; each
/// comment becomes one space.
fn without_comments(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut depth = 0usize;
    let mut in_quote = false;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b'\\' if in_quote || depth > 0 => {
                if depth == 0 {
                    out.push(b);
                    if let Some(&n) = s.get(i + 1) {
                        out.push(n);
                    }
                }
                i += 2;
                continue;
            }
            b'"' if depth == 0 => {
                in_quote = !in_quote;
                out.push(b);
            }
            b'(' if !in_quote => depth += 1,
            b')' if !in_quote && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(b' ');
                }
            }
            _ if depth > 0 => {}
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn split_outside_quotes(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut in_quote = false;
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b if b == sep && !in_quote => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let Some(inner) = v.strip_prefix(b"\"") else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b'\\' if i + 1 < inner.len() => {
                out.push(inner[i + 1]);
                i += 2;
                continue;
            }
            b'"' => break,
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_as_written_in_the_wild() {
        assert_eq!(Encoding::parse(b" 8BIT\r\n"), Encoding::EightBit);
        assert_eq!(
            Encoding::parse(b" 7bit (plain ascii)\r\n"),
            Encoding::SevenBit
        );
        assert_eq!(
            Encoding::parse(b" (x) Quoted-Printable\r\n"),
            Encoding::QuotedPrintable
        );
        assert_eq!(Encoding::parse(b"\r\n base64\r\n"), Encoding::Base64);
        assert_eq!(
            Encoding::parse(b" x-uuencode\r\n"),
            Encoding::Other("x-uuencode".into())
        );
    }

    #[test]
    fn content_types() {
        let c = ContentType::parse(
            b" Multipart/Mixed;\r\n\tBOUNDARY=\"=_a b;c\" (comment; boundary=x); charset=x\r\n",
        )
        .unwrap();
        assert_eq!(c.mime_type, "multipart/mixed");
        assert_eq!(c.boundary.as_deref(), Some(&b"=_a b;c"[..]));
        assert!(c.is_multipart());
        let c = ContentType::parse(b" multipart/alternative; boundary=abc123\r\n").unwrap();
        assert_eq!(c.boundary.as_deref(), Some(&b"abc123"[..]));
        let c = ContentType::parse(b" text/html (the page) ; charset=utf-8\r\n").unwrap();
        assert_eq!(c.mime_type, "text/html");
        assert!(c.is_text() && !c.is_multipart());
        assert!(ContentType::parse(b" text\r\n").is_none());
        // A multipart without a boundary cannot be split: it is read as a leaf.
        assert!(!ContentType::parse(b" multipart/mixed\r\n")
            .unwrap()
            .is_multipart());
    }
}

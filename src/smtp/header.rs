//! The header section of a message (RFC 5322 2.2): split into fields without changing a byte,
//! and the structural checks the relay insists on before it signs anything.

use std::fmt;

/// One header field: its name and its raw bytes (name, colon, value, folded lines, CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The value: everything after the colon, with its folding and final CRLF.
    pub fn value(&self) -> &'a [u8] {
        &self.raw[self.name.len() + 1..]
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Why a header section is malformed. Each names the problem for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    LineTooLong { line: usize },
    Nul { line: usize },
    NoColon { line: usize },
    BadName { line: usize },
    StartsWithContinuation,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::LineTooLong { line } => {
                write!(f, "header line {line} is longer than 998 bytes")
            }
            HeaderError::Nul { line } => write!(f, "header line {line} contains a NUL byte"),
            HeaderError::NoColon { line } => {
                write!(f, "header line {line} is not a field (no colon)")
            }
            HeaderError::BadName { line } => {
                write!(f, "header line {line} has an invalid field name")
            }
            HeaderError::StartsWithContinuation => {
                write!(f, "the header section starts with a continuation line")
            }
        }
    }
}

/// The RFC 5322 line limit, without the CRLF.
pub const MAX_LINE: usize = 998;

/// Split a header section (every line CRLF-terminated, without the blank line that ends it)
/// into fields.
pub fn parse_fields(section: &[u8]) -> Result<Vec<Field<'_>>, HeaderError> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut start_of_field: Option<(usize, usize)> = None; // (offset, name length)
    let mut pos = 0;
    let mut line_no = 0;
    while pos < section.len() {
        line_no += 1;
        let end = match memchr::memchr(b'\n', &section[pos..]) {
            Some(p) => pos + p + 1,
            None => section.len(),
        };
        let line = &section[pos..end];
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        if content.len() > MAX_LINE {
            return Err(HeaderError::LineTooLong { line: line_no });
        }
        if content.contains(&0) {
            return Err(HeaderError::Nul { line: line_no });
        }
        if content.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if start_of_field.is_none() {
                return Err(HeaderError::StartsWithContinuation);
            }
        } else {
            if let Some((s, n)) = start_of_field.take() {
                fields.push(make_field(section, s, n, pos));
            }
            let colon = content
                .iter()
                .position(|b| *b == b':')
                .ok_or(HeaderError::NoColon { line: line_no })?;
            let name = &content[..colon];
            // A space before the colon (obsolete syntax) is refused too: it is how header
            // confusion attacks hide a second From from some parsers.
            if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
                return Err(HeaderError::BadName { line: line_no });
            }
            start_of_field = Some((pos, colon));
        }
        pos = end;
    }
    if let Some((s, n)) = start_of_field {
        fields.push(make_field(section, s, n, section.len()));
    }
    Ok(fields)
}

fn make_field(section: &[u8], start: usize, name_len: usize, end: usize) -> Field<'_> {
    // The name is checked printable ASCII above, so this conversion cannot fail; fall back to
    // an empty name rather than panic if that ever changes.
    let name = std::str::from_utf8(&section[start..start + name_len]).unwrap_or("");
    Field {
        name,
        raw: &section[start..end],
    }
}

/// Header fields that may appear at most once (RFC 5322 3.6).
pub const SINGLETONS: &[&str] = &[
    "From",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_byte_for_byte() {
        let s = b"From: a@b\r\nSubject: x\r\n  folded\r\nX-A:\r\n";
        let f = parse_fields(s).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].name, "From");
        assert_eq!(f[1].raw, b"Subject: x\r\n  folded\r\n");
        assert_eq!(f[1].value(), b" x\r\n  folded\r\n");
        assert_eq!(f.iter().map(|f| f.raw.len()).sum::<usize>(), s.len());
    }

    #[test]
    fn refuses_malformed_sections() {
        assert_eq!(
            parse_fields(b"From a@b\r\n"),
            Err(HeaderError::NoColon { line: 1 })
        );
        assert_eq!(
            parse_fields(b" x: y\r\n"),
            Err(HeaderError::StartsWithContinuation)
        );
        assert_eq!(
            parse_fields(b"A: \0\r\n"),
            Err(HeaderError::Nul { line: 1 })
        );
        assert_eq!(
            parse_fields(b"From : a@b\r\n"),
            Err(HeaderError::BadName { line: 1 })
        );
        let long = [b"A: ".to_vec(), vec![b'x'; 996], b"\r\n".to_vec()].concat();
        assert_eq!(
            parse_fields(&long),
            Err(HeaderError::LineTooLong { line: 1 })
        );
        let ok = [b"A: ".to_vec(), vec![b'x'; 995], b"\r\n".to_vec()].concat();
        assert!(parse_fields(&ok).is_ok());
    }
}

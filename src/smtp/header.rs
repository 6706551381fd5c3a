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

/// Why a header section is refused by the relay's policy. Each names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    Malformed(HeaderError),
    FromCount(usize),
    Duplicate(&'static str),
    FromNotOneMailbox,
    FromNoDomain,
    FromNotUtf8,
    FromNonAscii,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Malformed(e) => write!(f, "Malformed header section: {e}"),
            PolicyError::FromCount(n) => write!(
                f,
                "Message must have exactly one From header field (it has {n})"
            ),
            PolicyError::Duplicate(name) => write!(f, "Duplicate {name} header field"),
            PolicyError::FromNotOneMailbox => write!(f, "From must hold exactly one mailbox"),
            PolicyError::FromNoDomain => write!(f, "From address has no domain"),
            PolicyError::FromNotUtf8 => write!(f, "From header field is not valid UTF-8"),
            PolicyError::FromNonAscii => write!(
                f,
                "From address is not ASCII and SMTPUTF8 was not requested"
            ),
        }
    }
}

/// A header section that passed the policy: its fields and the one From address.
#[derive(Debug)]
pub struct Checked<'a> {
    pub fields: Vec<Field<'a>>,
    /// The address of the From mailbox (what DMARC aligns on), as written.
    pub from: String,
}

/// The relay's header policy, before anything is signed: a well-formed section, exactly one
/// From holding exactly one mailbox, at most one of each singleton field (names compared
/// case-insensitively).
///
/// Non-ASCII bytes: field *names* must be printable ASCII (`parse_fields`). Field *values* may
/// hold 8-bit bytes whether or not the client said SMTPUTF8: PRODUCT promises header fields
/// byte for byte, most MTAs (Postfix, Exim) accept raw UTF-8 Subjects from applications that
/// never heard of RFC 6532, and DKIM signs bytes, so nothing breaks downstream by carrying
/// them. The exception is the From field, which decides who the message claims to be: it must
/// be valid UTF-8 (so there is one reading of it, not one per parser), and its address must be
/// ASCII unless SMTPUTF8 was requested (an internationalised address is an RFC 6531 feature).
pub fn check_section(section: &[u8], smtputf8: bool) -> Result<Checked<'_>, PolicyError> {
    let fields = parse_fields(section).map_err(PolicyError::Malformed)?;
    let from_fields: Vec<&Field<'_>> = fields.iter().filter(|f| f.is("From")).collect();
    if from_fields.len() != 1 {
        return Err(PolicyError::FromCount(from_fields.len()));
    }
    for name in SINGLETONS {
        if fields.iter().filter(|f| f.is(name)).count() > 1 {
            return Err(PolicyError::Duplicate(name));
        }
    }
    let from = from_address(from_fields[0].value())?;
    if !smtputf8 && !from.is_ascii() {
        return Err(PolicyError::FromNonAscii);
    }
    Ok(Checked { fields, from })
}

/// Is a From value structurally one mailbox: quotes, comments and angle brackets all closed,
/// at most one `<…>`, and no list separator (`,` or `;`) outside quotes and comments? mail-parser
/// recovers from unclosed ones (`Alice <a@b`, `a@b (x@c`) and from a trailing comma; receivers
/// may recover differently, so such values are refused instead.
fn balanced_single(text: &str) -> bool {
    let mut in_quote = false;
    let mut comment_depth = 0usize;
    let mut in_angle = false;
    let mut angles = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote || comment_depth > 0 => {
                chars.next();
            }
            '"' if comment_depth == 0 => in_quote = !in_quote,
            _ if in_quote => {}
            '(' => comment_depth += 1,
            ')' if comment_depth > 0 => comment_depth -= 1,
            ')' => return false,
            _ if comment_depth > 0 => {}
            '<' if !in_angle => {
                in_angle = true;
                angles += 1;
            }
            '>' if in_angle => in_angle = false,
            '<' | '>' | ',' | ';' => return false,
            _ => {}
        }
    }
    !in_quote && comment_depth == 0 && !in_angle && angles <= 1
}

/// The one mailbox address of a From field's value (after the colon, folding included).
///
/// The address is what mail-parser (the parser our verifier side uses, and a strict RFC 5322
/// one) finds; display names and comments never count, so `"ceo@example.com" <x@evil.test>`
/// is judged as `x@evil.test`. Then, because receivers parse too and may not agree on odd
/// syntax, the result must be a plain `local@domain` (no quotes, spaces, brackets, route, or
/// second '@'): anything a parser could read two ways is refused rather than guessed.
pub fn from_address(value: &[u8]) -> Result<String, PolicyError> {
    let Ok(text) = std::str::from_utf8(value) else {
        return Err(PolicyError::FromNotUtf8);
    };
    if !balanced_single(text) {
        return Err(PolicyError::FromNotOneMailbox);
    }
    let mut raw = Vec::with_capacity(value.len() + 8);
    raw.extend_from_slice(b"From:");
    raw.extend_from_slice(value);
    if !raw.ends_with(b"\r\n") {
        raw.extend_from_slice(b"\r\n");
    }
    // A blank line: mail-parser then reads exactly this one field as the header section.
    raw.extend_from_slice(b"\r\n");
    let parsed = mail_parser::MessageParser::new().parse_headers(&raw);
    let list = parsed
        .as_ref()
        .and_then(|m| m.from())
        .ok_or(PolicyError::FromNotOneMailbox)?;
    if list.has_groups() {
        return Err(PolicyError::FromNotOneMailbox);
    }
    let mut boxes = list.mailboxes();
    let (Some(first), None) = (boxes.next(), boxes.next()) else {
        return Err(PolicyError::FromNotOneMailbox);
    };
    let address = first
        .address()
        .ok_or(PolicyError::FromNotOneMailbox)?
        .trim();
    if address.is_empty() {
        return Err(PolicyError::FromNotOneMailbox);
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(PolicyError::FromNoDomain);
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && !"\"<>()[]:;,\\@".contains(c))
    };
    if !plain(local) || !plain(domain) {
        return Err(PolicyError::FromNotOneMailbox);
    }
    Ok(address.to_string())
}

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
    fn from_is_judged_by_its_one_real_address() {
        let ok = |v: &str| from_address(v.as_bytes());
        // Display names, comments and encoded words never count.
        for (v, want) in [
            (" Alice <a@example.com>\r\n", "a@example.com"),
            (" a@example.com (comment)\r\n", "a@example.com"),
            (" \"ceo@example.com\" <x@evil.test>\r\n", "x@evil.test"),
            (" ceo@example.com <x@evil.test>\r\n", "x@evil.test"),
            (" x@evil.test (ceo@example.com)\r\n", "x@evil.test"),
            (
                " =?utf-8?q?ceo@example.com?= <x@evil.test>\r\n",
                "x@evil.test",
            ),
            (" \"a\\\"b\" <a@example.com>\r\n", "a@example.com"),
            ("\r\n <a@example.com>\r\n", "a@example.com"),
        ] {
            assert_eq!(ok(v), Ok(want.to_string()), "{v:?}");
        }
        // Anything a parser could read as another address, or as several, is refused.
        for v in [
            " a@example.com, b@example.com\r\n",
            " a@example.com, \r\n",
            " a@example.com;x@evil.test\r\n",
            " undisclosed:;\r\n",
            " \r\n",
            " <>\r\n",
            " <x@evil.test> ceo@example.com\r\n",
            " <a@example.com> <x@evil.test>\r\n",
            " a@example.com\r\n <x@evil.test>\r\n",
            " \"a@example.com\"@evil.test\r\n",
            " a@example.com@evil.test\r\n",
            " <@evil.test:a@example.com>\r\n",
            " Alice <a@example.com\r\n",
            " a@example.com (x@evil.test\r\n",
            " a@example.com) x@evil.test\r\n",
            " a(x)@example.com\r\n",
            " a @ example.com\r\n",
        ] {
            assert_eq!(ok(v), Err(PolicyError::FromNotOneMailbox), "{v:?}");
        }
        assert_eq!(ok(" <root>\r\n"), Err(PolicyError::FromNoDomain));
        assert_eq!(
            from_address(b" Caf\xe9 <a@example.com>\r\n"),
            Err(PolicyError::FromNotUtf8)
        );
    }

    #[test]
    fn policy_counts_from_and_singletons() {
        let check = |s: &[u8]| check_section(s, false).map(|c| c.from);
        assert_eq!(
            check(b"From: a@example.com\r\nTo: b@x.test\r\n"),
            Ok("a@example.com".into())
        );
        assert_eq!(check(b"Subject: x\r\n"), Err(PolicyError::FromCount(0)));
        assert_eq!(
            check(b"From: a@example.com\r\nfrom: a@example.com\r\n"),
            Err(PolicyError::FromCount(2))
        );
        for name in SINGLETONS.iter().filter(|n| **n != "From") {
            let s = format!(
                "From: a@example.com\r\n{name}: 1\r\n{}: 2\r\n",
                name.to_uppercase()
            );
            assert_eq!(
                check(s.as_bytes()),
                Err(PolicyError::Duplicate(name)),
                "{name}"
            );
        }
        // Repeatable fields stay repeatable.
        assert!(check(
            b"From: a@example.com\r\nReceived: x\r\nReceived: y\r\nX-A: 1\r\nX-A: 2\r\n"
        )
        .is_ok());
        // 8-bit values are carried; a non-ASCII From address needs SMTPUTF8.
        assert!(check("From: a@example.com\r\nSubject: Gr\u{fc}\u{df}e\r\n".as_bytes()).is_ok());
        let eai = "From: J\u{f6}rg <j\u{f6}rg@example.com>\r\n".as_bytes();
        assert_eq!(check(eai), Err(PolicyError::FromNonAscii));
        assert_eq!(
            check_section(eai, true).map(|c| c.from),
            Ok("j\u{f6}rg@example.com".into())
        );
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

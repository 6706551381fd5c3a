//! The message as sendmail's callers hand it over, made ready to submit: read from stdin with
//! LF or CRLF line ends (bounded), cut at a lone `.` line unless `-i`, header section split
//! without touching a byte of the fields it keeps, addresses without a domain completed with
//! `qualify_domain` in From/To/Cc/Bcc, recipients taken from the headers for `-t` (Bcc then
//! removed), a From header added when there is none, and the envelope sender chosen. Pure
//! except for reading the input it is given.

use super::addresses::qualify;
use super::args::Options;
use super::{Failure, EX_DATAERR, EX_IOERR, EX_USAGE};
use crate::smtp::address::{is_valid_mailbox, normalize};
use std::io::BufRead;

/// How much of stdin is read. The relay refuses more than its `max_message_size` (25 MiB by
/// default) anyway; this only keeps a runaway pipe from eating the host's memory.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Read the message: every line CRLF-terminated, up to a lone `.` line unless `ignore_dots`.
/// Refuses input larger than `limit` bytes.
pub fn read_input<R: BufRead>(input: R, ignore_dots: bool, limit: u64) -> Result<Vec<u8>, Failure> {
    let mut r = input.take(limit + 1);
    let mut out = Vec::with_capacity(8 * 1024);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::new(EX_IOERR, format!("cannot read the message: {e}")))?;
        if n == 0 {
            break;
        }
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if !ignore_dots && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
        if out.len() as u64 > limit {
            return Err(Failure::new(
                EX_DATAERR,
                format!("the message is larger than {} MiB", limit / (1024 * 1024)),
            ));
        }
    }
    Ok(out)
}

/// What the submission needs: the message to send and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub message: Vec<u8>,
    /// The envelope sender; empty for `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    /// 8-bit content (declared with -B8BITMIME or found in the bytes).
    pub eight_bit: bool,
}

/// Where defaults come from.
pub struct Context<'a> {
    pub options: &'a Options,
    pub qualify_domain: Option<&'a str>,
    /// The calling user's login name, for a From header the message lacks.
    pub user: Option<&'a str>,
}

/// One header field: its name and its raw bytes (name, colon, value, CRLF, continuations).
struct Field {
    name: String,
    raw: Vec<u8>,
}

impl Field {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    fn value(&self) -> &[u8] {
        &self.raw[self.name.len() + 1..]
    }
}

/// Split a CRLF-normalised message into header fields and body. The header section ends at
/// the first empty line, or — as sendmail does for `echo text | sendmail user` — at the first
/// line that is neither a field nor a continuation, which then starts the body. A leading mbox
/// `From ` line is dropped.
fn split(message: &[u8]) -> (Vec<Field>, &[u8]) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    if message.starts_with(b"From ") {
        pos = memchr::memchr(b'\n', message).map_or(message.len(), |p| p + 1);
    }
    while pos < message.len() {
        let end = memchr::memchr(b'\n', &message[pos..]).map_or(message.len(), |p| pos + p + 1);
        let line = &message[pos..end];
        if line == b"\r\n" {
            return (fields, &message[end..]);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(last) = fields.last_mut() {
                last.raw.extend_from_slice(line);
                pos = end;
                continue;
            }
            return (fields, &message[pos..]);
        }
        let name = line
            .iter()
            .position(|b| *b == b':')
            .map(|c| &line[..c])
            .filter(|n| !n.is_empty() && n.iter().all(|b| (33..=126).contains(b)));
        let Some(name) = name else {
            return (fields, &message[pos..]);
        };
        fields.push(Field {
            name: String::from_utf8_lossy(name).into_owned(),
            raw: line.to_vec(),
        });
        pos = end;
    }
    (fields, &message[message.len()..])
}

/// Turn the input into the message and envelope to submit.
pub fn prepare(input: &[u8], ctx: &Context<'_>) -> Result<Prepared, Failure> {
    let data_err = |m: String| Failure::new(EX_DATAERR, m);
    let (mut fields, body) = split(input);

    // Complete addresses without a domain in the fields that carry mailboxes, in place.
    let mut header_from: Option<Vec<String>> = None;
    let mut header_rcpts: Vec<String> = Vec::new();
    for f in fields.iter_mut() {
        let kind = ["From", "To", "Cc", "Bcc"]
            .into_iter()
            .find(|k| f.is(k))
            .unwrap_or("");
        if kind.is_empty() {
            continue;
        }
        let (value, addresses) =
            qualify(f.value(), ctx.qualify_domain).map_err(|e| data_err(format!("{kind}: {e}")))?;
        let mut raw = Vec::with_capacity(f.name.len() + 1 + value.len());
        raw.extend_from_slice(f.name.as_bytes());
        raw.push(b':');
        raw.extend_from_slice(&value);
        f.raw = raw;
        if kind == "From" {
            header_from.get_or_insert_with(Vec::new).extend(addresses);
        } else {
            header_rcpts.extend(addresses);
        }
    }

    // Recipients: the arguments, plus the header fields' with -t (whose Bcc then goes).
    let mut recipients = Vec::new();
    for arg in &ctx.options.recipients {
        let (_, list) = qualify(arg.as_bytes(), ctx.qualify_domain)
            .map_err(|e| data_err(format!("recipient {arg}: {e}")))?;
        recipients.extend(list);
    }
    if ctx.options.from_headers {
        recipients.extend(header_rcpts);
        fields.retain(|f| !f.is("Bcc"));
    }
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(normalize(r)));
    if let Some(bad) = recipients.iter().find(|r| !is_valid_mailbox(r)) {
        return Err(data_err(format!(
            "'{bad}' is not a valid recipient address"
        )));
    }
    if recipients.is_empty() {
        return Err(Failure::new(
            EX_USAGE,
            "no recipients: give them as arguments, or use -t with To/Cc/Bcc in the message",
        ));
    }

    // The envelope sender given with -f, completed like the header addresses.
    let given_sender = match ctx.options.sender.as_deref().map(str::trim) {
        None => None,
        Some("") | Some("<>") => Some(String::new()),
        Some(s) => {
            let (_, list) = qualify(s.as_bytes(), ctx.qualify_domain)
                .map_err(|e| data_err(format!("-f {s}: {e}")))?;
            match list.as_slice() {
                [one] if is_valid_mailbox(one) => Some(one.clone()),
                _ => return Err(data_err(format!("-f {s}: not one valid address"))),
            }
        }
    };

    // No From: make one from -f, or the calling user at qualify_domain, named by -F.
    let from_address = match header_from {
        Some(list) => list
            .into_iter()
            .next()
            .ok_or_else(|| data_err("the From header holds no address".into()))?,
        None => {
            let address = match (&given_sender, ctx.user, ctx.qualify_domain) {
                (Some(s), _, _) if !s.is_empty() => s.clone(),
                (_, Some(user), Some(domain)) => format!("{user}@{domain}"),
                _ => {
                    return Err(data_err(
                        "the message has no From header, and without -f or qualify_domain \
                         there is no address to make one from"
                            .into(),
                    ))
                }
            };
            fields.push(Field {
                name: "From".into(),
                raw: from_field(ctx.options.full_name.as_deref(), &address).into_bytes(),
            });
            address
        }
    };
    let sender = given_sender.unwrap_or(from_address);
    if !sender.is_empty() && !is_valid_mailbox(&sender) {
        return Err(data_err(format!(
            "'{sender}' is not a valid sender address"
        )));
    }

    let mut message = Vec::with_capacity(input.len() + 128);
    for f in &fields {
        message.extend_from_slice(&f.raw);
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(body);
    let eight_bit = ctx.options.eight_bit || !message.is_ascii();
    Ok(Prepared {
        message,
        sender,
        recipients,
        eight_bit,
    })
}

/// A From field for `address` with an optional display name, quoted or encoded as needed.
fn from_field(name: Option<&str>, address: &str) -> String {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    match name {
        None => format!("From: {address}\r\n"),
        Some(n) => format!("From: {} <{address}>\r\n", display_name(n)),
    }
}

fn display_name(name: &str) -> String {
    if !name.is_ascii() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        return format!("=?UTF-8?B?{b64}?=");
    }
    let clean: String = name.chars().filter(|c| !c.is_ascii_control()).collect();
    let atext =
        |c: char| c.is_ascii_alphanumeric() || c == ' ' || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if clean.chars().all(atext) {
        clean
    } else {
        let escaped = clean.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        let a: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        super::super::args::parse(&a).unwrap()
    }

    fn run(input: &[u8], args: &[&str]) -> Result<Prepared, Failure> {
        let o = opts(args);
        let i = read_input(input, o.ignore_dots, MAX_INPUT)?;
        prepare(
            &i,
            &Context {
                options: &o,
                qualify_domain: Some("example.com"),
                user: Some("www-data"),
            },
        )
    }

    #[test]
    fn lf_becomes_crlf_and_a_lone_dot_ends_unless_i() {
        let i = read_input(&b"a\nb\r\n.\nafter\n"[..], false, MAX_INPUT).unwrap();
        assert_eq!(i, b"a\r\nb\r\n");
        let i = read_input(&b"a\n.\nafter"[..], true, MAX_INPUT).unwrap();
        assert_eq!(i, b"a\r\n.\r\nafter\r\n");
        let e = read_input(&[b'x'; 100][..], true, 10).unwrap_err();
        assert_eq!(e.code, EX_DATAERR);
    }

    #[test]
    fn php_style_t_takes_to_cc_bcc_and_drops_bcc() {
        let p = run(
            b"To: a@example.net\nCc: B <b@example.net>\nBcc: secret@example.net\nFrom: shop@example.com\nSubject: hi\n\nbody\n",
            &["-t", "-i"],
        )
        .unwrap();
        assert_eq!(
            p.recipients,
            vec!["a@example.net", "b@example.net", "secret@example.net"]
        );
        assert_eq!(p.sender, "shop@example.com");
        assert_eq!(
            p.message,
            b"To: a@example.net\r\nCc: B <b@example.net>\r\nFrom: shop@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
        );
        assert!(!p.eight_bit);
    }

    #[test]
    fn cron_style_is_qualified_in_place() {
        let p = run(
            "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> ls\nContent-Type: text/plain; charset=UTF-8\n\nGrüße\n".as_bytes(),
            &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
        )
        .unwrap();
        assert_eq!(p.recipients, vec!["root@example.com"]);
        assert_eq!(p.sender, "root@example.com");
        let text = String::from_utf8(p.message).unwrap();
        assert!(
            text.starts_with("From: root@example.com (Cron Daemon)\r\nTo: root@example.com\r\n"),
            "{text}"
        );
        assert!(p.eight_bit);
    }

    #[test]
    fn a_missing_from_is_made_from_f_or_the_user() {
        let p = run(b"To: a@example.net\n\nhi\n", &["-t", "-F", "Web Shop"]).unwrap();
        assert_eq!(p.sender, "www-data@example.com");
        assert!(p
            .message
            .ends_with(b"From: Web Shop <www-data@example.com>\r\n\r\nhi\r\n"));
        let p = run(
            b"Subject: x\n\nhi\n",
            &["-f", "alerts", "-F", "A \"B\"", "x@example.net"],
        )
        .unwrap();
        assert_eq!(p.sender, "alerts@example.com");
        let text = String::from_utf8(p.message).unwrap();
        assert!(
            text.contains("From: \"A \\\"B\\\"\" <alerts@example.com>\r\n"),
            "{text}"
        );
    }

    #[test]
    fn minus_f_wins_for_the_envelope_and_null_sender_is_kept() {
        let p = run(
            b"From: a@example.com\n\nx\n",
            &["-f", "bounce@example.com", "r@example.net"],
        )
        .unwrap();
        assert_eq!(p.sender, "bounce@example.com");
        let p = run(
            b"From: a@example.com\n\nx\n",
            &["-f", "<>", "r@example.net"],
        )
        .unwrap();
        assert_eq!(p.sender, "");
    }

    #[test]
    fn text_without_headers_becomes_the_body() {
        let p = run(b"just a line\nanother\n", &["ops@example.net"]).unwrap();
        assert_eq!(
            p.message,
            b"From: www-data@example.com\r\n\r\njust a line\r\nanother\r\n"
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(run(b"Subject: x\n\n", &["-t"]).unwrap_err().code, EX_USAGE);
        assert_eq!(
            run(b"To: John Smith\n\n", &["-t"]).unwrap_err().code,
            EX_DATAERR
        );
        assert_eq!(
            run(b"From: x\n\n", &["bad address@x"]).unwrap_err().code,
            EX_DATAERR
        );
        let o = opts(&["root"]);
        let e = prepare(
            b"From: root (Cron Daemon)\r\n\r\n",
            &Context {
                options: &o,
                qualify_domain: None,
                user: Some("root"),
            },
        )
        .unwrap_err();
        assert_eq!(e.code, EX_DATAERR);
        assert!(e.message.contains("qualify_domain"), "{}", e.message);
    }
}

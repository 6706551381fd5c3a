//! Address lists as programs write them in From/To/Cc/Bcc and on the sendmail command line
//! (RFC 5322 3.4): find each mailbox's address without disturbing anything else, so that an
//! address without a domain (cron's `From: root (Cron Daemon)`) can be completed in place,
//! display names, comments and folding kept byte for byte. Pure.

/// One mailbox found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The address, without comments, folding or angle brackets.
    pub address: String,
    /// Where a missing `@domain` goes: right after the address in the value.
    pub end: usize,
}

/// Scan a field value (or a command-line argument) into its mailboxes. Groups
/// (`undisclosed-recipients:;`) contribute their members, and empty ones nothing.
pub fn mailboxes(value: &[u8]) -> Result<Vec<Mailbox>, String> {
    let mut out = Vec::new();
    let mut seg = Segment::default();
    let mut comment = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    let mut angle: Option<usize> = None;
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
            if comment == 0 {
                seg.word(i, b, angle.is_some());
            }
            continue;
        }
        if comment > 0 {
            match b {
                b'\\' => escaped = true,
                b'(' => comment += 1,
                b')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            seg.word(i, b, angle.is_some());
            continue;
        }
        match b {
            b'(' => {
                comment = 1;
                seg.gap();
            }
            b'"' => {
                quoted = true;
                seg.word(i, b, angle.is_some());
            }
            b'\\' => {
                escaped = true;
                seg.word(i, b, angle.is_some());
            }
            b'<' if angle.is_none() => {
                angle = Some(i + 1);
                seg.in_angle = Some(String::new());
            }
            b'>' if angle.is_some() => {
                seg.angle_end = Some(i);
                angle = None;
            }
            // An obsolete source route (<@a,@b:user@c>): the address is after the colon.
            b':' if angle.is_some() => {
                seg.in_angle = Some(String::new());
            }
            b',' | b';' if angle.is_none() => seg.finish(&mut out)?,
            // A group's display name ends at the colon; its members follow.
            b':' => seg = Segment::default(),
            b' ' | b'\t' | b'\r' | b'\n' => seg.gap(),
            _ => seg.word(i, b, angle.is_some()),
        }
    }
    if quoted || comment > 0 || angle.is_some() {
        return Err(format!(
            "unbalanced quotes, parentheses or angle brackets in '{}'",
            String::from_utf8_lossy(value).trim()
        ));
    }
    seg.finish(&mut out)?;
    Ok(out)
}

/// What one comma-separated piece holds so far.
#[derive(Default)]
struct Segment {
    /// Text outside comments and angle brackets: the address when there are no brackets.
    bare: String,
    bare_end: usize,
    /// A gap (whitespace or comment) between two words of `bare`: a display name without
    /// brackets, which is not an address.
    bare_gap: bool,
    pending_gap: bool,
    in_angle: Option<String>,
    angle_end: Option<usize>,
}

impl Segment {
    fn word(&mut self, i: usize, b: u8, in_angle: bool) {
        if in_angle {
            if let Some(a) = self.in_angle.as_mut() {
                a.push(b as char);
            }
            return;
        }
        if self.pending_gap && !self.bare.is_empty() {
            self.bare_gap = true;
        }
        self.pending_gap = false;
        self.bare.push(b as char);
        self.bare_end = i + 1;
    }

    fn gap(&mut self) {
        self.pending_gap = true;
    }

    fn finish(&mut self, out: &mut Vec<Mailbox>) -> Result<(), String> {
        let seg = std::mem::take(self);
        let (address, end) = match (seg.in_angle, seg.angle_end) {
            (Some(a), Some(end)) => (a, end),
            _ if seg.bare.is_empty() => return Ok(()),
            _ if seg.bare_gap => {
                return Err(format!("'{}' is not an address", latin1_to_utf8(&seg.bare)))
            }
            _ => (seg.bare, seg.bare_end),
        };
        // An empty address is `<>`, the null sender: kept, never completed.
        out.push(Mailbox {
            address: latin1_to_utf8(&address),
            end,
        });
        Ok(())
    }
}

/// The scanner pushes bytes as chars (Latin-1 style) so that a byte index stays a byte index;
/// turn such a string back into the UTF-8 it was.
fn latin1_to_utf8(s: &str) -> String {
    let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Complete every address of `value` that has no domain with `@domain`. Returns the new value
/// (unchanged bytes when nothing was missing) and the complete addresses, in order. An address
/// without a domain and no `domain` to add is refused.
pub fn qualify(value: &[u8], domain: Option<&str>) -> Result<(Vec<u8>, Vec<String>), String> {
    let boxes = mailboxes(value)?;
    let mut inserts: Vec<usize> = Vec::new();
    let mut addresses = Vec::with_capacity(boxes.len());
    for mb in boxes {
        if mb.address.is_empty() {
            continue;
        }
        if mb.address.contains('@') {
            addresses.push(mb.address);
            continue;
        }
        let Some(d) = domain else {
            return Err(format!(
                "address '{}' has no domain, and no qualify_domain is set in the sendmail config",
                mb.address
            ));
        };
        inserts.push(mb.end);
        addresses.push(format!("{}@{d}", mb.address));
    }
    if inserts.is_empty() {
        return Ok((value.to_vec(), addresses));
    }
    let mut out = Vec::with_capacity(value.len() + inserts.len() * 32);
    let mut last = 0;
    for at in inserts {
        out.extend_from_slice(&value[last..at]);
        out.push(b'@');
        out.extend_from_slice(domain.unwrap_or_default().as_bytes());
        last = at;
    }
    out.extend_from_slice(&value[last..]);
    Ok((out, addresses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v: &str) -> Vec<String> {
        mailboxes(v.as_bytes())
            .unwrap()
            .into_iter()
            .map(|m| m.address)
            .collect()
    }

    fn q(v: &str) -> String {
        let (out, _) = qualify(v.as_bytes(), Some("example.com")).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn finds_addresses_in_the_usual_forms() {
        assert_eq!(addrs(" a@example.net\r\n"), vec!["a@example.net"]);
        assert_eq!(
            addrs(" Alice <alice@example.com>, \"Bob, Jr.\" <bob@example.net>"),
            vec!["alice@example.com", "bob@example.net"]
        );
        assert_eq!(
            addrs(" bob@example.net,\r\n\tA <alice@example.com>"),
            vec!["bob@example.net", "alice@example.com"]
        );
        assert_eq!(addrs(" root (Cron Daemon)"), vec!["root"]);
        assert_eq!(addrs(" undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(
            addrs(" team: a@x.test, b@x.test;, c@y.test"),
            vec!["a@x.test", "b@x.test", "c@y.test"]
        );
        assert_eq!(
            addrs(" \"john doe\"@example.com"),
            vec!["\"john doe\"@example.com"]
        );
        assert_eq!(
            addrs(" <@relay.test:user@example.com>"),
            vec!["user@example.com"]
        );
        assert_eq!(
            addrs(" Jörg <joerg@example.com>"),
            vec!["joerg@example.com"]
        );
        assert_eq!(addrs("<>"), vec![""]);
    }

    #[test]
    fn refuses_what_is_not_an_address_list() {
        assert!(mailboxes(b" John Smith").is_err());
        assert!(mailboxes(b" Alice <alice@example.com").is_err());
        assert!(mailboxes(b" \"open quote <a@b.test>").is_err());
    }

    #[test]
    fn completes_bare_local_parts_in_place() {
        assert_eq!(
            q(" root (Cron Daemon)\r\n"),
            " root@example.com (Cron Daemon)\r\n"
        );
        assert_eq!(q(" root\r\n"), " root@example.com\r\n");
        assert_eq!(
            q(" Cron Daemon <root>, ops@example.net"),
            " Cron Daemon <root@example.com>, ops@example.net"
        );
        assert_eq!(q(" a@example.net"), " a@example.net");
        let (_, list) = qualify(b" root, b@x.test", Some("example.com")).unwrap();
        assert_eq!(list, vec!["root@example.com", "b@x.test"]);
        let err = qualify(b" root", None).unwrap_err();
        assert!(err.contains("qualify_domain"), "{err}");
    }
}

//! SMTP replies: a code, an enhanced status code (RFC 3463) and text; client text made safe to
//! show in one.

use std::borrow::Cow;
use std::fmt;

/// One SMTP reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code ("2.0.0"), or empty for replies that carry none (220, 221, 334, 354).
    pub status: &'static str,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// The reply on the wire. Text is stripped of CR and LF so nothing a client sent can
    /// inject a reply line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let text = self.lines.get(i).map(|l| l.as_ref()).unwrap_or("");
            let clean: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            if self.status.is_empty() {
                out.extend_from_slice(format!("{}{}{}\r\n", self.code, sep, clean).as_bytes());
            } else {
                out.extend_from_slice(
                    format!("{}{}{} {}\r\n", self.code, sep, self.status, clean).as_bytes(),
                );
            }
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lines.join(" / ");
        if self.status.is_empty() {
            write!(f, "{} {}", self.code, text)
        } else {
            write!(f, "{} {} {}", self.code, self.status, text)
        }
    }
}

/// Text a client sent, made safe to show in a reply or log: printable ASCII, bounded.
pub fn shown(s: &str) -> Cow<'_, str> {
    if s.len() <= 100 && s.chars().all(|c| c.is_ascii_graphic()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(100)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_strips_newlines() {
        let r = Reply::new(550, "5.7.1", "no\r\n250 ok");
        assert_eq!(r.to_bytes(), b"550 5.7.1 no250 ok\r\n");
        let r = Reply {
            code: 250,
            status: "",
            lines: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.to_bytes(), b"250-a\r\n250 b\r\n");
    }
}

//! The Postfix policy delegation protocol (Postfix's SMTPD_POLICY_README): a request is
//! `name=value` lines ended by an empty line, the answer one `action=...` line and an empty
//! line, and a connection carries any number of requests. Unknown attributes are ignored.
//! On a broken request the server must not answer: it logs and closes the connection, and
//! Postfix applies its `default_action` (a 4xx: the client retries later).
//!
//! Pure: the server feeds lines in and writes the answer out. Imports only the verdict.

use super::{Tagging, Verdict};

/// The longest attribute line accepted (Postfix's own values are a few hundred bytes).
pub const MAX_LINE: usize = 8 * 1024;
/// The largest request accepted, all lines together.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The most attributes in one request (Postfix 3.x sends about 30).
pub const MAX_ATTRIBUTES: usize = 256;

/// Why a request is refused (and the connection closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("an attribute line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the request is larger than {MAX_REQUEST} bytes")]
    RequestTooLarge,
    #[error("the request has more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("not a name=value attribute: {0:?}")]
    NotAnAttribute(String),
    #[error("request type {0:?} is not smtpd_access_policy")]
    UnknownRequest(String),
}

/// A request as its lines arrive.
#[derive(Debug, Default)]
pub struct Request {
    attributes: Vec<(String, String)>,
    size: usize,
}

impl Request {
    /// Take one line (its newline and a trailing CR removed). `Ok(true)`: that was the empty
    /// line that ends the request.
    pub fn push_line(&mut self, line: &[u8]) -> Result<bool, ProtocolError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(ProtocolError::LineTooLong);
        }
        if line.is_empty() {
            return Ok(true);
        }
        self.size += line.len() + 1;
        if self.size > MAX_REQUEST {
            return Err(ProtocolError::RequestTooLarge);
        }
        if self.attributes.len() >= MAX_ATTRIBUTES {
            return Err(ProtocolError::TooManyAttributes);
        }
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once('=') else {
            let shown: String = text.chars().take(60).collect();
            return Err(ProtocolError::NotAnAttribute(shown));
        };
        self.attributes.push((name.to_string(), value.to_string()));
        Ok(false)
    }

    /// The first value of attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// No attribute yet (an empty line before any attribute is not a request).
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

/// The verdict on a complete request and the answer to send (with its closing empty line).
/// Only a bounce (`sender=` empty) to an address of a tagged domain can be refused:
/// `REJECT 5.7.1 ...`; everything else is `DUNNO` (let the next restriction decide).
pub fn answer(
    tagging: &Tagging,
    request: &Request,
    now: i64,
) -> Result<(Verdict, String), ProtocolError> {
    match request.get("request") {
        Some("smtpd_access_policy") => {}
        other => {
            return Err(ProtocolError::UnknownRequest(
                other.unwrap_or("(none)").to_string(),
            ))
        }
    }
    // A request without a sender attribute is not a bounce we can recognise.
    let verdict = match (request.get("sender"), request.get("recipient")) {
        (Some(sender), Some(recipient)) => {
            let client = request
                .get("client_address")
                .and_then(|a| a.parse::<std::net::IpAddr>().ok());
            tagging.check(sender, recipient, client, now)
        }
        _ => Verdict::NotChecked,
    };
    let action = if verdict.is_backscatter() {
        format!("action=REJECT 5.7.1 {}\n\n", verdict.describe())
    } else {
        "action=DUNNO\n\n".to_string()
    };
    Ok((verdict, action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backscatter::secret::Keys;

    const NOW: i64 = 1_780_000_000;

    fn tagging() -> Tagging {
        Tagging::new(
            Keys::from_secrets(&["policy-test-secret-0123"]).unwrap(),
            ["example.com"],
            7,
        )
    }

    fn request(text: &str) -> Request {
        let mut r = Request::default();
        for line in text.split('\n') {
            if r.push_line(line.as_bytes()).unwrap() {
                break;
            }
        }
        r
    }

    /// What Postfix 3.7 sends at RCPT, trimmed.
    fn postfix(sender: &str, recipient: &str) -> String {
        format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
             client_address=192.0.2.1\nclient_name=mx.example.net\nhelo_name=mx.example.net\n\
             queue_id=\nsender={sender}\nrecipient={recipient}\nrecipient_count=0\n\
             size=0\npolicy_context=\nserver_address=127.0.0.1\nserver_port=25\n\
             compatibility_level=3.6\nmail_version=3.7.11\n\n"
        )
    }

    #[test]
    fn bounces_to_untagged_addresses_are_rejected() {
        let t = tagging();
        let (v, a) = answer(&t, &request(&postfix("", "app@example.com")), NOW).unwrap();
        assert_eq!(v, Verdict::Untagged);
        assert!(a.starts_with("action=REJECT 5.7.1 "), "{a}");
        assert!(a.ends_with("\n\n") && a.matches('\n').count() == 2, "{a:?}");
        let tagged = t.tag("app@example.com", NOW).unwrap();
        let (v, a) = answer(&t, &request(&postfix("", &tagged)), NOW).unwrap();
        assert_eq!((v, a.as_str()), (Verdict::Valid, "action=DUNNO\n\n"));
        let (v, a) = answer(
            &t,
            &request(&postfix("a@example.net", "app@example.com")),
            NOW,
        )
        .unwrap();
        assert_eq!((v, a.as_str()), (Verdict::NotChecked, "action=DUNNO\n\n"));
        let (v, _) = answer(&t, &request(&postfix("", "someone@example.org")), NOW).unwrap();
        assert_eq!(v, Verdict::NotChecked);
        // The same bounce from the relay's own address (its DSN) is let in.
        let ours = tagging().accepting_bounces_from(&["192.0.2.0/24".parse().unwrap()]);
        let (v, a) = answer(&ours, &request(&postfix("", "app@example.com")), NOW).unwrap();
        assert_eq!(
            (v, a.as_str()),
            (Verdict::TrustedSource, "action=DUNNO\n\n")
        );
    }

    #[test]
    fn values_may_hold_equals_signs_and_crlf_is_tolerated() {
        let mut r = Request::default();
        assert!(!r.push_line(b"request=smtpd_access_policy\r").unwrap());
        assert!(!r.push_line(b"sender=").unwrap());
        assert!(!r
            .push_line(b"recipient=prvs=0123abcdef=app@example.com")
            .unwrap());
        assert!(r.push_line(b"\r").unwrap());
        assert_eq!(r.get("recipient"), Some("prvs=0123abcdef=app@example.com"));
        assert_eq!(r.get("sender"), Some(""));
        let (v, _) = answer(&tagging(), &r, NOW).unwrap();
        assert_eq!(v, Verdict::BadTag);
    }

    #[test]
    fn broken_requests() {
        let mut r = Request::default();
        assert_eq!(
            r.push_line(&vec![b'a'; MAX_LINE + 1]),
            Err(ProtocolError::LineTooLong)
        );
        let mut r = Request::default();
        assert!(matches!(
            r.push_line(b"no equals sign"),
            Err(ProtocolError::NotAnAttribute(_))
        ));
        let mut r = Request::default();
        let line = format!("x={}", "v".repeat(MAX_LINE - 2));
        let mut result = Ok(false);
        for _ in 0..(MAX_REQUEST / MAX_LINE + 1) {
            result = r.push_line(line.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ProtocolError::RequestTooLarge));
        let mut r = Request::default();
        let mut result = Ok(false);
        for i in 0..=MAX_ATTRIBUTES {
            result = r.push_line(format!("a{i}=1").as_bytes());
        }
        assert_eq!(result, Err(ProtocolError::TooManyAttributes));
        let r = request("request=junk\nsender=\nrecipient=app@example.com\n\n");
        assert!(matches!(
            answer(&tagging(), &r, NOW),
            Err(ProtocolError::UnknownRequest(_))
        ));
    }
}

//! Pieces of the URLs mail is configured and reported with: `smtp://user:pass@host:port`
//! submission targets, `mailto:` report addresses (RFC 8460 `rua`), `imaps://user@host/mailbox`
//! sources. Percent-decoding (RFC 3986 2.1) is strict, unlike a browser's: a `%` not followed
//! by two hex digits is an error, never kept as it is.

/// Why a percent-encoded text could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

/// `text` with each `%XX` replaced by its byte.
pub fn percent_decode(text: &str) -> Result<String, PercentError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PercentError::BadEscape)?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// `host[:port]` or `[v6 address][:port]`: the host (without brackets) and the port as
/// written, if any. `None`: a `[` without its `]`.
pub fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        Some((host, after.strip_prefix(':')))
    } else {
        Some(match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(percent_decode("a%2Cb%40c").as_deref(), Ok("a,b@c"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Ok("café"));
        assert_eq!(percent_decode("plain").as_deref(), Ok("plain"));
        assert_eq!(percent_decode("%4"), Err(PercentError::BadEscape));
        assert_eq!(percent_decode("%zz"), Err(PercentError::BadEscape));
        assert_eq!(percent_decode("%ff"), Err(PercentError::NotUtf8));
    }

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host_port("mx.example"), Some(("mx.example", None)));
        assert_eq!(
            split_host_port("mx.example:25"),
            Some(("mx.example", Some("25")))
        );
        assert_eq!(split_host_port("[::1]:993"), Some(("::1", Some("993"))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("[::1"), None);
    }
}

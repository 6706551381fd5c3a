//! DKIM canonicalization (RFC 6376 3.4), our own streaming implementation. It serves the
//! self-verification of every signature mail-auth makes: an independent second implementation
//! catches canonicalization bugs (like mail-auth issue #62, trailing whitespace-only lines)
//! before a message leaves, instead of at the receiver.

/// Streaming body canonicalizer feeding a SHA-256 context.
pub struct BodyCanon {
    relaxed: bool,
    hash: aws_lc_rs::digest::Context,
    /// Line breaks (and, relaxed, whitespace-only lines) held back: trailing empty lines are
    /// not part of the canonical body.
    pending_crlfs: usize,
    /// Relaxed: a run of whitespace inside the line not yet written.
    pending_wsp: bool,
    /// A CR whose LF has not arrived yet.
    pending_cr: bool,
    /// Anything at all written (relaxed: an empty body hashes as nothing).
    wrote: bool,
    out: Vec<u8>,
}

impl BodyCanon {
    pub fn new(relaxed: bool) -> BodyCanon {
        BodyCanon {
            relaxed,
            hash: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            pending_crlfs: 0,
            pending_wsp: false,
            pending_cr: false,
            wrote: false,
            out: Vec::with_capacity(8192),
        }
    }

    fn content(&mut self, b: u8) {
        for _ in 0..self.pending_crlfs {
            self.out.extend_from_slice(b"\r\n");
        }
        self.pending_crlfs = 0;
        if self.pending_wsp {
            self.out.push(b' ');
            self.pending_wsp = false;
        }
        self.out.push(b);
        self.wrote = true;
    }

    pub fn write(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.pending_wsp = false;
                    self.pending_crlfs += 1;
                    continue;
                }
                self.content(b'\r');
            }
            match b {
                b'\r' => self.pending_cr = true,
                b' ' | b'\t' if self.relaxed => self.pending_wsp = true,
                _ => self.content(b),
            }
        }
        self.hash.update(&self.out);
        self.out.clear();
    }

    /// The body hash (`bh=`).
    pub fn finish(mut self) -> Vec<u8> {
        if self.pending_cr {
            self.pending_cr = false;
            self.content(b'\r');
        }
        if self.wrote || !self.relaxed {
            self.out.extend_from_slice(b"\r\n");
        }
        self.hash.update(&self.out);
        self.hash.finish().as_ref().to_vec()
    }
}

/// Canonicalize one header field (`raw` = name, colon, value, folding, CRLF) into `out`.
pub fn header(raw: &[u8], relaxed: bool, out: &mut Vec<u8>) {
    if !relaxed {
        out.extend_from_slice(raw);
        return;
    }
    let colon = raw.iter().position(|b| *b == b':').unwrap_or(raw.len());
    let name = &raw[..colon];
    out.extend(
        name.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b.to_ascii_lowercase()),
    );
    out.push(b':');
    let value = raw.get(colon + 1..).unwrap_or(&[]);
    let mut wsp = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => wsp = true,
            _ => {
                if wsp && started {
                    out.push(b' ');
                }
                wsp = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The DKIM-Signature field with the value of its `b=` tag removed, as it is hashed.
pub fn without_b_value(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let colon = raw.iter().position(|b| *b == b':').map_or(0, |p| p + 1);
    out.extend_from_slice(&raw[..colon]);
    let value = &raw[colon..];
    for (i, seg) in value.split(|b| *b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let eq = seg.iter().position(|b| *b == b'=');
        let is_b = eq.is_some_and(|e| {
            seg[..e]
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .eq(b"b".iter())
        });
        match (is_b, eq) {
            (true, Some(e)) => {
                out.extend_from_slice(&seg[..=e]);
                // Keep the line break that ends the field, if the tag was last.
                if seg.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            _ => out.extend_from_slice(seg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(relaxed: bool, chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = BodyCanon::new(relaxed);
        for ch in chunks {
            c.write(ch);
        }
        c.finish()
    }

    fn sha(b: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn rfc6376_examples() {
        // RFC 6376 3.4.5.
        let b = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(body(true, &[b]), sha(b" C\r\nD E\r\n"));
        assert_eq!(body(false, &[b]), sha(b" C \r\nD \t E\r\n"));
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(body(true, &[]), sha(b""));
        assert_eq!(body(false, &[]), sha(b"\r\n"));
        assert_eq!(body(true, &[b"\r\n \r\n\t\r\n"]), sha(b""));
    }

    #[test]
    fn whitespace_only_trailing_lines_are_dropped_relaxed() {
        assert_eq!(
            body(true, &[b"<p>x</p>\r\n  \r\n \t \r\n"]),
            sha(b"<p>x</p>\r\n")
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let b = b"a  b\r\n\r\n c\t\r\n\r\n";
        let whole = body(true, &[b]);
        let parts: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(body(true, &parts), whole);
        assert_eq!(body(false, &parts), body(false, &[b]));
    }

    #[test]
    fn relaxed_header() {
        let mut out = Vec::new();
        header(b"SubJect : A  b\r\n\t c \r\n", true, &mut out);
        assert_eq!(out, b"subject:A b c\r\n");
    }

    #[test]
    fn strips_b_value_only() {
        let h = b"DKIM-Signature: v=1; bh=abc; b=xyz\r\n\t123;\r\n";
        assert_eq!(
            without_b_value(h),
            b"DKIM-Signature: v=1; bh=abc; b=;\r\n".to_vec()
        );
        let h = b"DKIM-Signature: v=1; bh=abc; b=xyz\r\n";
        assert_eq!(
            without_b_value(h),
            b"DKIM-Signature: v=1; bh=abc; b=\r\n".to_vec()
        );
    }
}

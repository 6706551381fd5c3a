//! Quoted-printable (RFC 2045 6.7), streaming: an encoder that takes the content of a part in
//! pieces of any size (a 50 MiB line included) and a decoder for one encoded line at a time.
//!
//! Why not a crate: the QP crates on crates.io (`quoted_printable`, mail-builder's encoder)
//! take the whole input as one slice and return the whole output, so a part would have to sit
//! in memory whole, and their output restarts its line length at every call; a relay that
//! promises bounded memory for a 50 MiB message needs the encoder's state (column, a pending
//! space) to carry across pieces.
//!
//! Encoding rules: bytes 33-126 except `=` are written as they are; space and tab too, except
//! at the end of an encoded line, where they become `=20` / `=09`; everything else is `=XX`
//! (upper-case hex). No encoded line exceeds 76 characters: a soft line break `=` CRLF is
//! inserted before a character (or a whole `=XX`) that would not fit. Hard line breaks (the
//! CRLFs of text) are written by the caller with [`Encoder::hard_break`]; a CR or LF given as
//! content is encoded, so binary content survives exactly.

/// The longest encoded line, without its CRLF (RFC 2045 6.7 rule 5).
pub const MAX_ENCODED_LINE: usize = 76;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A streaming quoted-printable encoder writing into a caller's buffer.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    /// Characters on the current encoded line.
    column: usize,
    /// A space or tab not yet written: how it is written depends on what follows it.
    pending_space: Option<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Encode content bytes (no line structure: CR and LF are content here).
    pub fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.reserve(bytes.len() + bytes.len() / 16 + 8);
        for &b in bytes {
            if let Some(sp) = self.pending_space.take() {
                // Something follows the space on this line: it may stay literal.
                self.put(&[sp], out);
            }
            match b {
                b' ' | b'\t' => self.pending_space = Some(b),
                33..=60 | 62..=126 => self.put(&[b], out),
                _ => self.put(&escape(b), out),
            }
        }
    }

    /// End the current line with a hard line break (CRLF in the decoded content).
    pub fn hard_break(&mut self, out: &mut Vec<u8>) {
        self.flush_space(out);
        out.extend_from_slice(b"\r\n");
        self.column = 0;
    }

    /// The content ends here (what follows is not part of it, e.g. the CRLF before a
    /// boundary): a space at the very end is escaped, and no line break is written.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_space(out);
    }

    fn flush_space(&mut self, out: &mut Vec<u8>) {
        if let Some(sp) = self.pending_space.take() {
            // Trailing white space would be removed in transport: escape it.
            self.put(&escape(sp), out);
        }
    }

    /// Write one encoded unit (a literal byte or an `=XX`), breaking the line before it if it
    /// would not fit with room for a soft break's `=`.
    fn put(&mut self, unit: &[u8], out: &mut Vec<u8>) {
        if self.column + unit.len() > MAX_ENCODED_LINE - 1 {
            out.extend_from_slice(b"=\r\n");
            self.column = 0;
        }
        out.extend_from_slice(unit);
        self.column += unit.len();
    }
}

fn escape(b: u8) -> [u8; 3] {
    [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]
}

/// The byte an `=XX` escape stands for (either case of hex digit).
pub fn hex_pair(high: u8, low: u8) -> Option<u8> {
    Some(hex_value(high)? << 4 | hex_value(low)?)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decode one encoded line (without its CRLF), appending the bytes to `out`. Returns whether
/// the line ended in a soft line break (the next line continues this one); otherwise the line
/// ended in a hard break. Lenient as mail readers are: trailing white space is dropped, and an
/// `=` not followed by two hex digits is kept as it is.
pub fn decode_line(line: &[u8], out: &mut Vec<u8>) -> bool {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    let line = &line[..end];
    let (line, soft) = match line.strip_suffix(b"=") {
        Some(l) => (l, true),
        None => (line, false),
    };
    decode_escapes(line, out);
    soft
}

/// `=XX` escapes decoded, every other byte (an `=` without two hex digits too) kept: the middle
/// of a line, appended to `out`.
pub fn decode_escapes(bytes: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if let Some(v) = bytes.get(i + 1..i + 3).and_then(|h| hex_pair(h[0], h[1])) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Decode a whole encoded text: hard breaks become CRLF.
    fn decode_all(encoded: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut lines: Vec<&[u8]> = encoded.split(|b| *b == b'\n').collect();
        if encoded.ends_with(b"\n") {
            lines.pop();
        }
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let soft = decode_line(line, &mut out);
            if !soft && (i + 1 < n || encoded.ends_with(b"\n")) {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    fn check_encoded(encoded: &[u8]) {
        for line in encoded.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(
                line.len() <= MAX_ENCODED_LINE,
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert!(line.iter().all(|b| (32..=126).contains(b) || *b == b'\t'));
            assert!(
                !line.ends_with(b" ") && !line.ends_with(b"\t"),
                "trailing space: {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn text_lines_round_trip_in_any_pieces() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        const ALPHABET: &[u8] = b"ab =\t.\xc3\xa9\x00~";
        for _ in 0..300 {
            let lines: Vec<Vec<u8>> = (0..rng.random_range(1..6))
                .map(|_| {
                    (0..rng.random_range(0..400))
                        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                        .collect()
                })
                .collect();
            let mut enc = Encoder::new();
            let mut out = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    enc.hard_break(&mut out);
                }
                let mut rest = &line[..];
                while !rest.is_empty() {
                    let n = rng.random_range(1..=rest.len());
                    enc.write(&rest[..n], &mut out);
                    rest = &rest[n..];
                }
            }
            enc.finish(&mut out);
            check_encoded(&out);
            assert_eq!(decode_all(&out), lines.join(&b"\r\n"[..]));
        }
    }

    #[test]
    fn binary_content_keeps_its_line_breaks_as_bytes() {
        let data = b"a\r\nb\rc\n \r\n=";
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.write(data, &mut out);
        enc.finish(&mut out);
        assert_eq!(out, b"a=0D=0Ab=0Dc=0A =0D=0A=3D");
        assert_eq!(decode_all(&out), data);
    }

    #[test]
    fn soft_breaks_keep_escapes_whole_and_spaces_visible() {
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.write(&[b'x'; 74], &mut out);
        enc.write(b"\xff ", &mut out);
        enc.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}=\r\n=FF=20", "x".repeat(74))
        );
    }

    #[test]
    fn lenient_decoding() {
        let mut out = Vec::new();
        assert!(!decode_line(b"a=3Db=zz=4", &mut out));
        assert_eq!(out, b"a=b=zz=4");
        out.clear();
        assert!(decode_line(b"abc=  ", &mut out));
        assert_eq!(out, b"abc");
    }
}

//! What the body of a message holds that SMTP cares about, found while it streams in: a line
//! longer than SMTP allows (RFC 5321 4.5.3.1.6: 998 bytes before the CRLF), and 8-bit bytes.
//!
//! This runs over every body byte of every message, next to the DKIM body hash, so it is built
//! to cost next to nothing on ordinary mail: instead of visiting every line end, it looks at
//! most one 999-byte window ahead of the current line start and asks only for the *last* line
//! end in it (`memrchr`, which scans backwards and stops at the first hit: a few dozen bytes on
//! prose). A window without a line end holds a long line; only then are its exact length and
//! end searched for. 8-bit bytes are found by OR-ing 32-byte blocks together (vectorised by the
//! compiler), and not looked for again once found.
//!
//! Line numbers are not counted here (that would mean visiting every line end); the rare
//! refusal that names a line finds it again in the spool draft (`first_long_line`).

/// The RFC 5321 limit: bytes in a line before its CRLF.
pub const MAX_LINE: usize = 998;

/// The facts about a body gathered by [`BodyScan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyFacts {
    /// The length (without CRLF) of the longest line over [`MAX_LINE`] bytes; 0 when every
    /// line is within the limit.
    pub longest_over: u64,
    /// A byte with the high bit set.
    pub eight_bit: bool,
}

impl BodyFacts {
    pub fn has_long_lines(&self) -> bool {
        self.longest_over > 0
    }
}

/// The streaming scanner: `write` each piece of the body as it is received (CRLF line ends),
/// then `finish`.
#[derive(Debug, Default, Clone)]
pub struct BodyScan {
    /// Bytes of the current line seen so far (its CR included, once it came).
    run: u64,
    /// The current line is already known to be over the limit.
    in_long: bool,
    facts: BodyFacts,
}

/// Bytes a line may have before its LF: 998 and the CR.
const WINDOW: usize = MAX_LINE + 1;

impl BodyScan {
    pub fn new() -> BodyScan {
        BodyScan::default()
    }

    pub fn write(&mut self, chunk: &[u8]) {
        if !self.facts.eight_bit && has_eight_bit(chunk) {
            self.facts.eight_bit = true;
        }
        let mut pos = 0;
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            if self.in_long {
                match memchr::memchr(b'\n', rest) {
                    Some(p) => {
                        self.end_long_line(self.run + p as u64);
                        pos += p + 1;
                    }
                    None => {
                        self.run += rest.len() as u64;
                        return;
                    }
                }
                continue;
            }
            // An LF must come within the bytes the line has left.
            let budget = WINDOW as u64 - self.run.min(WINDOW as u64);
            let window = rest.len().min(budget as usize + 1);
            match memchr::memrchr(b'\n', &rest[..window]) {
                Some(p) => {
                    self.run = 0;
                    pos += p + 1;
                }
                None if window == rest.len() && (window as u64) <= budget => {
                    // The chunk ends inside the window: the line may still end in time.
                    self.run += window as u64;
                    return;
                }
                None => {
                    self.in_long = true;
                    self.run += window as u64;
                    pos += window;
                }
            }
        }
    }

    /// A long line ended; `bytes` counts everything before its LF (its CR included).
    fn end_long_line(&mut self, bytes: u64) {
        let len = bytes.saturating_sub(1);
        self.facts.longest_over = self.facts.longest_over.max(len);
        self.in_long = false;
        self.run = 0;
    }

    /// The facts of the whole body (a last line without CRLF counts as it is).
    pub fn finish(mut self) -> BodyFacts {
        if self.run > MAX_LINE as u64 {
            self.facts.longest_over = self.facts.longest_over.max(self.run);
        }
        self.facts
    }
}

/// Is any byte of `s` 8-bit? Blocks of 32 bytes OR-ed together (the compiler vectorises the
/// inner loop), checked once per 1 KiB so a body that is 8-bit early stops early.
pub fn has_eight_bit(s: &[u8]) -> bool {
    let mut blocks = s.chunks_exact(1024);
    for big in blocks.by_ref() {
        let mut acc = [0u8; 32];
        for block in big.chunks_exact(32) {
            for (a, b) in acc.iter_mut().zip(block) {
                *a |= b;
            }
        }
        if acc.iter().fold(0, |x, y| x | y) & 0x80 != 0 {
            return true;
        }
    }
    blocks.remainder().iter().any(|b| *b >= 0x80)
}

/// Finds the first line over [`MAX_LINE`] of a body read again piece by piece: (1-based line
/// number, length without CRLF). For the refusal that names it, on the rare path.
#[derive(Debug, Default)]
pub struct LongLineFinder {
    line: u64,
    run: u64,
    /// The byte before the current position (to tell a CR before an LF at a piece's start).
    last: u8,
}

impl LongLineFinder {
    /// Feed the next piece of the body; returns the first long line once its end is seen.
    pub fn write(&mut self, piece: &[u8]) -> Option<(u64, u64)> {
        let mut pos = 0;
        while pos < piece.len() {
            match memchr::memchr(b'\n', &piece[pos..]) {
                Some(p) => {
                    let before = if p > 0 { piece[pos + p - 1] } else { self.last };
                    let bytes = self.run + p as u64;
                    let len = bytes - u64::from(bytes > 0 && before == b'\r');
                    self.line += 1;
                    self.run = 0;
                    self.last = b'\n';
                    pos += p + 1;
                    if len > MAX_LINE as u64 {
                        return Some((self.line, len));
                    }
                }
                None => {
                    self.run += (piece.len() - pos) as u64;
                    self.last = piece[piece.len() - 1];
                    return None;
                }
            }
        }
        None
    }

    /// The end of the body: a last line without CRLF.
    pub fn finish(&mut self) -> Option<(u64, u64)> {
        (self.run > MAX_LINE as u64).then_some((self.line + 1, self.run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The plain answer: every line measured.
    fn reference(body: &[u8]) -> BodyFacts {
        let mut longest = 0u64;
        for line in body.split(|b| *b == b'\n') {
            let len = line.strip_suffix(b"\r").unwrap_or(line).len() as u64;
            if len > MAX_LINE as u64 {
                longest = longest.max(len);
            }
        }
        // A last line ending in CR without LF keeps its CR.
        if let Some(last) = body.rsplit(|b| *b == b'\n').next() {
            if last.ends_with(b"\r") && last.len() as u64 > MAX_LINE as u64 {
                longest = longest.max(last.len() as u64);
            }
        }
        BodyFacts {
            longest_over: longest,
            eight_bit: body.iter().any(|b| *b >= 0x80),
        }
    }

    fn scan_in_pieces(body: &[u8], rng: &mut impl Rng) -> BodyFacts {
        let mut s = BodyScan::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(5000));
            s.write(&rest[..n]);
            rest = &rest[n..];
        }
        s.finish()
    }

    #[test]
    fn lines_at_and_around_the_limit() {
        for len in [0usize, 1, 997, 998, 999, 1000, 5000] {
            let mut body = b"short\r\n".to_vec();
            body.extend(std::iter::repeat_n(b'x', len));
            body.extend_from_slice(b"\r\nend\r\n");
            let mut s = BodyScan::new();
            s.write(&body);
            let want = if len > 998 { len as u64 } else { 0 };
            assert_eq!(s.finish().longest_over, want, "len {len}");
        }
    }

    #[test]
    fn random_bodies_in_random_pieces_match_the_plain_answer() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let mut body = Vec::new();
            for _ in 0..rng.random_range(0..40) {
                let len = match rng.random_range(0..10) {
                    0 => rng.random_range(990..1010),
                    1 => rng.random_range(1000..6000),
                    _ => rng.random_range(0..120),
                };
                body.extend((0..len).map(|_| {
                    if rng.random_range(0..500) == 0 {
                        0xC3
                    } else {
                        b'a'
                    }
                }));
                if rng.random_range(0..20) > 0 {
                    body.extend_from_slice(b"\r\n");
                }
            }
            assert_eq!(
                scan_in_pieces(&body, &mut rng),
                reference(&body),
                "{} bytes",
                body.len()
            );
        }
    }

    #[test]
    fn eight_bit_anywhere() {
        for at in [0usize, 31, 32, 1023, 1024, 2047, 3000] {
            let mut v = vec![b'a'; 3001];
            assert!(!has_eight_bit(&v));
            v[at] = 0x80;
            assert!(has_eight_bit(&v), "{at}");
        }
    }

    #[test]
    fn the_finder_names_the_first_long_line() {
        let mut body = Vec::new();
        for _ in 0..11 {
            body.extend_from_slice(b"ok\r\n");
        }
        body.extend(std::iter::repeat_n(b'y', 4873));
        body.extend_from_slice(b"\r\n");
        body.extend(std::iter::repeat_n(b'z', 2000));
        let mut f = LongLineFinder::default();
        let mut found = None;
        for piece in body.chunks(100) {
            if let Some(x) = f.write(piece) {
                found = Some(x);
                break;
            }
        }
        assert_eq!(found, Some((12, 4873)));
        let mut f = LongLineFinder::default();
        assert_eq!(f.write(&[b'q'; 1500]), None);
        assert_eq!(f.finish(), Some((1, 1500)));
    }
}

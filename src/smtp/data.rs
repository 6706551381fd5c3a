//! DATA framing (RFC 5321 4.1.1.4, 4.5.2): the message ends at CRLF "." CRLF and nowhere else,
//! leading dots are unstuffed, and a bare CR or LF is turned into CRLF (and remembered, for
//! `bare_newlines: reject`). So that no smuggling payload (`<LF>.<LF>`, `<CR>.<CR>`,
//! `<LF>.<CR><LF>`…) can end a message early, only a real CRLF starts a line for the purpose of
//! the terminator and of unstuffing; what a bare line break leaves behind is content.
//!
//! Pure: bytes in, bytes out. The decoder is written around smtp-proto's `DataReceiver`, which
//! neither normalises bare line breaks nor handles a terminator right after DATA.

/// Where the decoder stands between two input chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After a CRLF (or at the very start): a '.' here is special.
    LineStart,
    /// Inside a line.
    Mid,
    /// A CR whose LF has not arrived yet.
    Cr,
    /// A '.' at the start of a line.
    Dot,
    /// ".\r" at the start of a line: the terminator if LF follows.
    DotCr,
}

/// Decodes the DATA phase of one message.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    bare_newline: bool,
}

impl Default for DataDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl DataDecoder {
    pub fn new() -> Self {
        DataDecoder {
            state: State::LineStart,
            bare_newline: false,
        }
    }

    /// Whether a bare CR or LF was seen (and normalised) so far.
    pub fn saw_bare_newline(&self) -> bool {
        self.bare_newline
    }

    /// Decode `input`, appending message bytes to `out`. Returns `Some(n)` when the end of data
    /// was found after consuming `n` bytes of `input` (the rest is the next command), `None`
    /// when all of `input` was consumed and more is needed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Mid => match memchr::memchr2(b'\r', b'\n', &input[i..]) {
                    None => {
                        out.extend_from_slice(&input[i..]);
                        i = input.len();
                    }
                    Some(p) => {
                        out.extend_from_slice(&input[i..i + p]);
                        i += p + 1;
                        if input[i - 1] == b'\r' {
                            self.state = State::Cr;
                        } else {
                            self.bare_newline = true;
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                },
                State::LineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Cr => {
                    out.extend_from_slice(b"\r\n");
                    if input[i] == b'\n' {
                        i += 1;
                        self.state = State::LineStart;
                    } else {
                        self.bare_newline = true;
                        self.state = State::Mid;
                    }
                }
                State::Dot => {
                    match input[i] {
                        b'\r' => {
                            i += 1;
                            self.state = State::DotCr;
                            continue;
                        }
                        // ".<LF>" is not a terminator: keep the dot as content.
                        b'\n' => out.push(b'.'),
                        // A stuffed line: the leading dot goes.
                        _ => {}
                    }
                    self.state = State::Mid;
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::LineStart;
                        return Some(i + 1);
                    }
                    // ".<CR>x": a bare CR after a dot; content, not an end.
                    self.bare_newline = true;
                    out.extend_from_slice(b".\r\n");
                    self.state = State::Mid;
                }
            }
        }
        None
    }
}

/// Turns bare CR and LF into CRLF in data that has no dot framing (BDAT chunks), across
/// chunk boundaries.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    pending_cr: bool,
    bare_newline: bool,
}

impl Normalizer {
    pub fn saw_bare_newline(&self) -> bool {
        self.bare_newline
    }

    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
                self.bare_newline = true;
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    self.bare_newline = true;
                    out.extend_from_slice(b"\r\n");
                }
                _ => out.push(b),
            }
        }
    }

    /// End of data: a CR still pending is a bare one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare_newline = true;
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Dot-stuff message bytes for sending (every line starting with '.' gets another), writing
/// into `out`. `at_line_start` carries the line state between chunks; start with `true`.
pub fn dot_stuff(chunk: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in chunk.iter().enumerate() {
        if *at_line_start && b == b'.' {
            out.extend_from_slice(&chunk[start..i]);
            out.push(b'.');
            start = i;
        }
        *at_line_start = b == b'\n';
    }
    out.extend_from_slice(&chunk[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        let end = d.decode(input, &mut out);
        (out, end, d.saw_bare_newline())
    }

    /// Feed one byte at a time: chunk boundaries must not matter.
    fn decode_bytewise(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let mut d = DataDecoder::new();
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            if d.decode(std::slice::from_ref(b), &mut out).is_some() {
                return (out, Some(i + 1));
            }
        }
        (out, None)
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf() {
        let (out, end, bare) = decode_all(b"a\r\nb\r\n.\r\nMAIL FROM:<x>\r\n");
        assert_eq!(out, b"a\r\nb\r\n");
        assert_eq!(end, Some(9));
        assert!(!bare);
    }

    #[test]
    fn empty_message_right_after_data() {
        assert_eq!(decode_all(b".\r\n"), (vec![], Some(3), false));
    }

    #[test]
    fn unstuffs_leading_dots() {
        let (out, _, _) = decode_all(b"..x\r\n...\r\n.\r\n");
        assert_eq!(out, b".x\r\n..\r\n");
        let (out, _, _) = decode_all(b"..first\r\n.\r\n");
        assert_eq!(out, b".first\r\n");
    }

    #[test]
    fn smuggling_vectors_never_end_the_message() {
        for v in [
            &b"a\n.\nMAIL FROM:<e@evil>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<e@evil>\r\n",
            b"a\r\n.\nMAIL FROM:<e@evil>\r\n",
            b"a\r.\rMAIL FROM:<e@evil>\r\n",
            b"a\r.\r\nMAIL FROM:<e@evil>\r\n",
            b"a\r\n.\rMAIL FROM:<e@evil>\r\n",
            b"a\r\n\x00.\r\nMAIL FROM:<e@evil>\r\n",
        ] {
            let (out, end, _) = decode_all(v);
            assert_eq!(end, None, "{v:?} ended the message");
            assert!(!has_bare_newline(&out), "{v:?} -> {out:?}");
            assert_eq!(decode_bytewise(v), (out, None));
        }
    }

    #[test]
    fn bare_newlines_are_normalised_and_flagged() {
        let (out, end, bare) = decode_all(b"a\nb\rc\r\r\n.\r\n");
        assert_eq!(out, b"a\r\nb\r\nc\r\n\r\n");
        assert!(end.is_some());
        assert!(bare);
    }

    #[test]
    fn bytewise_equals_whole() {
        let input = b"x\r\n..y\r\n.z\n.\r\r\n\r\n.\r\nrest";
        let (a, ea, _) = decode_all(input);
        let (b, eb) = decode_bytewise(input);
        assert_eq!((a, ea), (b, eb));
    }

    #[test]
    fn stuffing_round_trips() {
        let msg = b".a\r\nb\r\n.\r\n..c\r\n";
        let mut stuffed = Vec::new();
        let mut at = true;
        dot_stuff(&msg[..3], &mut at, &mut stuffed);
        dot_stuff(&msg[3..], &mut at, &mut stuffed);
        stuffed.extend_from_slice(b".\r\n");
        let (out, end, _) = decode_all(&stuffed);
        assert_eq!(out, msg);
        assert_eq!(end, Some(stuffed.len()));
    }

    #[test]
    fn normalizer_handles_split_crlf() {
        let mut n = Normalizer::default();
        let mut out = Vec::new();
        n.push(b"a\r", &mut out);
        n.push(b"\nb\nc\r", &mut out);
        n.finish(&mut out);
        assert_eq!(out, b"a\r\nb\r\nc\r\n");
        assert!(n.saw_bare_newline());
    }

    fn has_bare_newline(b: &[u8]) -> bool {
        b.iter().enumerate().any(|(i, &c)| {
            (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
                || (c == b'\r' && b.get(i + 1) != Some(&b'\n'))
        })
    }
}

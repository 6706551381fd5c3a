//! DATA framing (RFC 5321 4.1.1.4, 4.5.2): the message ends at CRLF "." CRLF and nowhere else,
//! leading dots are unstuffed, and a bare CR or LF is turned into CRLF (and remembered, for
//! `bare_newlines: reject`). So that no smuggling payload (`<LF>.<LF>`, `<CR>.<CR>`,
//! `<LF>.<CR><LF>`…) can end a message early, only a real CRLF starts a line for the purpose of
//! the terminator; what a bare line break leaves behind is content.
//!
//! Unstuffing is the one place where a bare line break does count as a line start: a client
//! that writes bare LFs also dot-stuffs after them (that is what "line" means to it), so after a
//! bare CR or LF a leading '.' followed by more text is removed, exactly as after a CRLF. A
//! lone '.' there (a would-be terminator) stays in the message as content. With this rule the
//! decoded bytes equal `normalize(message)` for every message that `dot_stuff` prepared, bare
//! line breaks or not (checked by property tests below).
//!
//! Pure: bytes in, bytes out. The decoder is written around smtp-proto's `DataReceiver`, which
//! neither normalises bare line breaks nor handles a terminator right after DATA.

/// Where the decoder stands between two input chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After a CRLF (or at the very start): a '.' here may be the terminator or stuffing.
    LineStart,
    /// After a bare CR or LF: a '.' here may be stuffing, never the terminator.
    BareLineStart,
    /// Inside a line.
    Mid,
    /// A CR whose LF has not arrived yet.
    Cr,
    /// A '.' at the start of a line.
    Dot,
    /// A '.' after a bare line break.
    BareDot,
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
        // Each arm either consumes input[i] (i += 1) or changes state without consuming it.
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
                            self.bare_line_break(out);
                        }
                    }
                },
                State::LineStart | State::BareLineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = if self.state == State::LineStart {
                            State::Dot
                        } else {
                            State::BareDot
                        };
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        i += 1;
                        out.extend_from_slice(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        self.bare_line_break(out);
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        i += 1;
                        self.state = State::DotCr;
                        continue;
                    }
                    // ".<LF>" is not a terminator: keep the dot as content. Otherwise a stuffed
                    // line: the leading dot goes.
                    if input[i] == b'\n' {
                        out.push(b'.');
                    }
                    self.state = State::Mid;
                }
                State::BareDot => {
                    // A lone dot after a bare line break looks like a terminator and is content;
                    // a dot with more text after it is stuffing.
                    if input[i] == b'\r' || input[i] == b'\n' {
                        out.push(b'.');
                    }
                    self.state = State::Mid;
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::LineStart;
                        return Some(i + 1);
                    }
                    // ".<CR>x": a dot then a bare CR; content, not an end.
                    out.push(b'.');
                    self.bare_line_break(out);
                }
            }
        }
        None
    }

    /// A bare CR or LF was read: write CRLF in its place.
    fn bare_line_break(&mut self, out: &mut Vec<u8>) {
        self.bare_newline = true;
        out.extend_from_slice(b"\r\n");
        self.state = State::BareLineStart;
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
/// A line starts after any CR or LF, so that even bytes with bare line breaks come out of a
/// `DataDecoder` (or a receiver that takes LF as a line end) unchanged: never a lone '.' line.
pub fn dot_stuff(chunk: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in chunk.iter().enumerate() {
        if *at_line_start && b == b'.' {
            out.extend_from_slice(&chunk[start..i]);
            out.push(b'.');
            start = i;
        }
        *at_line_start = b == b'\n' || b == b'\r';
    }
    out.extend_from_slice(&chunk[start..]);
}

/// What a message becomes once its bare CRs and LFs are CRLF: the bytes the relay signs for
/// `bare_newlines: normalize`. The reference the decoder is tested against.
pub fn normalize(message: &[u8]) -> Vec<u8> {
    let mut n = Normalizer::default();
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    n.push(message, &mut out);
    n.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        // After a bare line break too (a client that writes LF lines stuffs after them), but a
        // lone dot there is content, not an end and not stuffing.
        // The ".\r\n" after the bare LF is content as well: only the last one ends the data.
        let (out, end, _) = decode_all(b"a\n..b\r.c\n.\n.\r\n.\r\n");
        assert_eq!(out, b"a\r\n.b\r\nc\r\n.\r\n.\r\n");
        assert_eq!(end, Some(17));
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

    /// Bytes where the interesting ones (CR, LF, '.', NUL) are common.
    fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => Just(b'\r'),
            4 => Just(b'\n'),
            4 => Just(b'.'),
            1 => Just(0u8),
            3 => Just(b'a'),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..64)
    }

    /// What a client sends for `message`: dot-stuffed, then CRLF "." CRLF (after a CRLF of its
    /// own unless the message already ends in one).
    fn transmit(message: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut at = true;
        dot_stuff(message, &mut at, &mut wire);
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        wire
    }

    fn expected(message: &[u8]) -> Vec<u8> {
        let mut want = normalize(message);
        if !message.is_empty() && !message.ends_with(b"\r\n") {
            want.extend_from_slice(b"\r\n");
        }
        want
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any message, stuffed and terminated, decodes to its normalised bytes, ends exactly at
        /// the terminator, in one chunk or split anywhere.
        #[test]
        fn stuffed_message_round_trips(message in message_bytes(), split in any::<prop::sample::Index>()) {
            let mut wire = transmit(&message);
            let end = wire.len();
            wire.extend_from_slice(b"QUIT\r\n");
            let (out, got_end, bare) = decode_all(&wire);
            prop_assert_eq!(&out, &expected(&message));
            prop_assert_eq!(got_end, Some(end));
            prop_assert_eq!(bare, has_bare_newline(&message));
            prop_assert!(!has_bare_newline(&out));

            let cut = split.index(end + 1);
            let mut d = DataDecoder::new();
            let mut out2 = Vec::new();
            let first = d.decode(&wire[..cut], &mut out2);
            let total = match first {
                Some(n) => Some(n),
                None => d.decode(&wire[cut..], &mut out2).map(|n| cut + n),
            };
            prop_assert_eq!(total, Some(end));
            prop_assert_eq!(out2, out);
        }

        /// Arbitrary input (not necessarily well stuffed): the output never holds a bare CR or
        /// LF, and the decoder stops only right after a real CRLF "." CRLF.
        #[test]
        fn arbitrary_input_ends_only_at_the_real_terminator(input in message_bytes()) {
            let (out, end, _) = decode_all(&input);
            prop_assert!(!has_bare_newline(&out));
            if let Some(n) = end {
                let head = &input[..n];
                prop_assert!(head == b".\r\n" || head.ends_with(b"\r\n.\r\n"), "{:?}", head);
            }
            prop_assert_eq!(decode_bytewise(&input), (out, end));
        }

        /// BDAT's normaliser agrees with `normalize` however the data is chunked.
        #[test]
        fn normalizer_is_chunking_independent(message in message_bytes(), split in any::<prop::sample::Index>()) {
            let cut = split.index(message.len() + 1);
            let mut n = Normalizer::default();
            let mut out = Vec::new();
            n.push(&message[..cut], &mut out);
            n.push(&message[cut..], &mut out);
            n.finish(&mut out);
            prop_assert_eq!(out, normalize(&message));
            prop_assert_eq!(n.saw_bare_newline(), has_bare_newline(&message));
        }
    }

    fn has_bare_newline(b: &[u8]) -> bool {
        b.iter().enumerate().any(|(i, &c)| {
            (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
                || (c == b'\r' && b.get(i + 1) != Some(&b'\n'))
        })
    }
}

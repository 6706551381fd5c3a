//! DATA framing: the decoder on arbitrary bytes in arbitrary chunks, and the round trip of a
//! dot-stuffed, terminated message. The output never holds a bare CR or LF, the data ends only
//! right after a real CRLF "." CRLF, chunking never changes anything, and stuffing then
//! decoding gives back exactly the normalised message.
#![no_main]

use dkim_relay::smtp::data::{dot_stuff, normalize, DataDecoder, Normalizer};
use libfuzzer_sys::fuzz_target;

fn has_bare_newline(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
            || (c == b'\r' && b.get(i + 1) != Some(&b'\n'))
    })
}

fn decode_chunked(input: &[u8], step: usize) -> (Vec<u8>, Option<usize>, bool) {
    let mut d = DataDecoder::new();
    let mut out = Vec::new();
    let mut offset = 0;
    for chunk in input.chunks(step) {
        if let Some(n) = d.decode(chunk, &mut out) {
            return (out, Some(offset + n), d.saw_bare_newline());
        }
        offset += chunk.len();
    }
    (out, None, d.saw_bare_newline())
}

fuzz_target!(|data: &[u8]| {
    let (step, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 64).max(1), rest),
        None => return,
    };

    // Arbitrary client bytes.
    let whole = decode_chunked(input, input.len().max(1));
    let chunked = decode_chunked(input, step);
    assert_eq!(whole, chunked, "chunking changed the result");
    let (out, end, _) = whole;
    assert!(!has_bare_newline(&out), "bare line break in output");
    if let Some(n) = end {
        let head = &input[..n];
        assert!(
            head == b".\r\n" || head.ends_with(b"\r\n.\r\n"),
            "ended at {n}"
        );
    }

    // The same bytes as a message, stuffed and terminated by a well-behaved client.
    let mut wire = Vec::new();
    let mut at = true;
    for chunk in input.chunks(step) {
        dot_stuff(chunk, &mut at, &mut wire);
    }
    let needs_crlf = !input.is_empty() && !input.ends_with(b"\r\n");
    if needs_crlf {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    let terminated = wire.len();
    wire.extend_from_slice(b"MAIL FROM:<x@y>\r\n");
    let (out, end, bare) = decode_chunked(&wire, step);
    let mut want = normalize(input);
    if needs_crlf {
        want.extend_from_slice(b"\r\n");
    }
    assert_eq!(end, Some(terminated), "did not end at the terminator");
    assert_eq!(out, want, "round trip changed the message");
    assert_eq!(bare, has_bare_newline(input));

    // BDAT's normaliser, chunked, agrees with normalize.
    let mut n = Normalizer::default();
    let mut out = Vec::new();
    for chunk in input.chunks(step) {
        n.push(chunk, &mut out);
    }
    n.finish(&mut out);
    assert_eq!(out, normalize(input));
});

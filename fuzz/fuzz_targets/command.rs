//! The command side of a session: arbitrary client bytes are cut into lines (`next_line`, with
//! its over-long-line rule) and each line parsed (`parse_command`). Nothing may panic, no line
//! handed on may exceed 998 + CRLF, and every refusal renders as one well-formed reply line.
#![no_main]

use dkim_relay::inbound::{next_line, parse_command, MAX_COMMAND_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the stream is chunked, as TCP reads would.
    let (step, stream) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1) * 7, rest),
        None => return,
    };
    let mut buf = Vec::new();
    let mut skipping = false;
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        while let Some(line) = next_line(&mut buf, &mut skipping) {
            let Some(line) = line else { continue };
            assert!(line.len() <= MAX_COMMAND_LINE, "{} bytes", line.len());
            assert_eq!(line.last(), Some(&b'\n'));
            if let Err(reply) = parse_command(&line) {
                let wire = reply.to_bytes();
                assert!(reply.code >= 500 && reply.code < 600, "{reply}");
                assert!(wire.ends_with(b"\r\n"));
                let body = &wire[..wire.len() - 2];
                assert!(
                    !body.contains(&b'\r') && !body.contains(&b'\n'),
                    "reply with a line break inside: {wire:?}"
                );
                assert!(body.len() < 200, "reply echoes too much: {}", body.len());
            }
        }
    }
});

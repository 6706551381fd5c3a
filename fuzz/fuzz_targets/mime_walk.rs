//! The MIME walk and re-encoding (`mime::walk`): for any body, cut into pieces anywhere, the
//! survey and the rewrite never panic, the rewrite's output has no line over 998 bytes
//! whenever the survey found nothing it cannot fix, and the same body cut differently gives
//! the same output.
#![no_main]

use dkim_relay::mime::fields::{ContentType, Encoding};
use dkim_relay::mime::walk::{Policy, Walk};
use libfuzzer_sys::fuzz_target;

fn run(top: &Option<ContentType>, body: &[u8], policy: Policy, piece: usize) -> Option<Vec<u8>> {
    let mut survey = Walk::survey(top.clone(), Encoding::SevenBit, policy);
    for c in body.chunks(piece) {
        survey.feed(c);
    }
    let (plan, problems, _) = survey.finish();
    if !problems.is_empty() {
        return None;
    }
    let mut rewrite = Walk::rewrite(top.clone(), Encoding::SevenBit, plan);
    let mut out = Vec::new();
    for c in body.chunks(piece) {
        rewrite.feed(c);
        out.append(&mut rewrite.out);
    }
    let (_, _, rest) = rewrite.finish();
    out.extend_from_slice(&rest);
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // The first line is the message's Content-Type value; the rest is the body.
    let (ct, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(p) => (&rest[..p], &rest[p + 1..]),
        None => (rest, &b""[..]),
    };
    let top = ContentType::parse(ct);
    let policy = Policy {
        long_lines: true,
        eight_bit: flags & 1 == 1,
    };
    let piece = usize::from(flags >> 1).max(1);
    let whole = run(&top, body, policy, body.len().max(1));
    let pieces = run(&top, body, policy, piece);
    assert_eq!(whole, pieces, "the output depends on how the body was cut");
    if let Some(out) = whole {
        // Lines of the input are CRLF-terminated in the relay; only then is the promise made.
        let crlf_only = body.iter().enumerate().all(|(i, &b)| {
            (b != b'\n' || (i > 0 && body[i - 1] == b'\r'))
                && (b != b'\r' || body.get(i + 1) == Some(&b'\n'))
        });
        if crlf_only {
            for line in out.split(|b| *b == b'\n') {
                assert!(line.len() <= 999, "a line of {} bytes", line.len());
            }
        }
    }
});

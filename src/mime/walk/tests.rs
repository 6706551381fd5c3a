//! The walk against mail-parser (an independent MIME reader): every part decodes to the same
//! content before and after the rewrite, and no line of the result is over 998 bytes.

use super::*;
use crate::smtp::header::parse_fields;
use rand::{Rng, SeedableRng};

/// (header section, body) of a message.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    let p = memchr::memmem::find(message, b"\r\n\r\n").expect("blank line");
    (&message[..p + 2], &message[p + 4..])
}

/// Survey and rewrite a message as the relay does, in pieces of `piece` bytes.
fn fix(message: &[u8], policy: Policy, piece: usize) -> Result<(Vec<u8>, Plan), Vec<Problem>> {
    let (section, body) = split(message);
    let fields = parse_fields(section).unwrap();
    let (ct, enc) = crate::mime::top::body_type(&fields);
    let mut survey = Walk::survey(ct.clone(), enc.clone(), policy);
    for c in body.chunks(piece) {
        survey.feed(c);
    }
    let (plan, problems, _) = survey.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut rewrite = Walk::rewrite(ct, enc, plan.clone());
    let mut new_body = Vec::new();
    for c in body.chunks(piece) {
        rewrite.feed(c);
        new_body.append(&mut rewrite.out);
    }
    let (_, _, rest) = rewrite.finish();
    new_body.extend_from_slice(&rest);
    let new_section = match plan.top_level() {
        Some(Action::Quote { .. }) => crate::mime::top::quoted_printable_section(
            &fields,
            crate::mime::scan::has_eight_bit(body),
        ),
        _ => section.to_vec(),
    };
    let mut out = new_section;
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&new_body);
    Ok((out, plan))
}

/// Every leaf's (content type, decoded content) as mail-parser reads it; text with LF line
/// ends.
fn leaves(message: &[u8]) -> Vec<(String, Vec<u8>)> {
    let m = mail_parser::MessageParser::default()
        .parse(message)
        .expect("parses");
    let mut out = Vec::new();
    for part in m.parts() {
        if part.is_multipart() || part.nested().is_some() {
            continue;
        }
        let ct = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_default();
        let mut decoded = part.decoded().into_owned();
        if part.is_text() || ct.starts_with("text/") || ct.is_empty() {
            decoded = String::from_utf8_lossy(&decoded)
                .replace("\r\n", "\n")
                .into_bytes();
        }
        out.push((ct, decoded));
    }
    out
}

/// Every leaf part's body as it stands in `message` (not decoded) is 7-bit: what
/// `eight_bit: encode` promises (part headers may keep their 8-bit bytes).
fn assert_leaf_bodies_seven_bit(message: &[u8], context: &str) {
    let m = mail_parser::MessageParser::default()
        .parse(message)
        .expect("parses");
    for part in m.parts() {
        if part.is_multipart() || part.nested().is_some() {
            continue;
        }
        assert!(
            part.raw_body().is_ascii(),
            "{context}: an 8-bit leaf body is left\n{}",
            String::from_utf8_lossy(message)
        );
    }
}

fn max_line(message: &[u8]) -> usize {
    message
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

const LONG: Policy = Policy {
    long_lines: true,
    eight_bit: false,
};

fn check(message: &[u8], policy: Policy) -> (Vec<u8>, Plan) {
    let mut first: Option<(Vec<u8>, Plan)> = None;
    for piece in [1 << 20, 7, 1000] {
        let (fixed, plan) = fix(message, policy, piece).expect("fixable");
        assert!(
            max_line(&fixed) <= 998,
            "{}",
            String::from_utf8_lossy(&fixed)
        );
        assert_eq!(
            leaves(&fixed),
            leaves(message),
            "{}",
            String::from_utf8_lossy(&fixed)
        );
        if policy.eight_bit {
            assert_leaf_bodies_seven_bit(&fixed, &format!("pieces of {piece}"));
        }
        match &first {
            Some(f) => assert_eq!(f.0, fixed, "the same whatever the pieces"),
            None => first = Some((fixed, plan)),
        }
    }
    first.expect("ran")
}

fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

#[test]
fn one_line_html_without_mime_version() {
    let msg = format!(
        "From: a@example.com\r\nContent-Type: text/html\r\n\r\n<html>{}</html>\r\n",
        long('x', 40_000)
    );
    let (fixed, plan) = check(msg.as_bytes(), LONG);
    assert_eq!(plan.top_level(), Some(Action::Quote { text: true }));
    let (section, _) = split(&fixed);
    assert_eq!(
        section,
        b"From: a@example.com\r\nContent-Type: text/html\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    );
}

#[test]
fn only_the_part_with_the_long_line_changes() {
    let plain = "Content-Type: text/plain; charset=utf-8\r\n\r\nshort text\r\n";
    let msg = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n{plain}--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8Bit (raw)\r\n\r\n<p>{} caf\u{e9} = \t</p>  \r\nnext line\r\n--b1--\r\nepilogue\r\n",
        long('y', 5000)
    );
    let (fixed, plan) = check(msg.as_bytes(), LONG);
    assert_eq!(plan.actions.len(), 1);
    let text = String::from_utf8(fixed).unwrap();
    assert!(text.contains(&format!("--b1\r\n{plain}--b1\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>yyy")));
    assert!(
        text.ends_with("next line\r\n--b1--\r\nepilogue\r\n"),
        "{text}"
    );
}

#[test]
fn nested_mixed_with_an_8bit_attachment() {
    let msg = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nhello\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>hello</b>\r\n--inner--\r\n--outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=data.csv\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n\u{fc}ber,2\r\n\r\n--outer--\r\n",
        long('z', 3000)
    );
    let (_, plan) = check(msg.as_bytes(), LONG);
    assert_eq!(
        plan.actions.values().copied().collect::<Vec<_>>(),
        vec![Action::Quote { text: false }]
    );
}

#[test]
fn parts_without_headers_or_blank_lines_and_missing_delimiters() {
    let msg = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{}\r\n--b\r\n\r\n{}\r\n--b\r\nContent-Type: text/plain\r\n{}\r\n--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\n{}\r\n--b--\r\n{}\r\n",
        long('p', 1200),
        long('a', 1500),
        long('b', 1600),
        long('c', 1700),
        long('e', 2000)
    );
    let (fixed, plan) = fix(msg.as_bytes(), LONG, 13).unwrap();
    assert_eq!(plan.actions.len(), 3, "{plan:?}");
    assert!(max_line(&fixed) <= 998);
    let text = String::from_utf8(fixed).unwrap();
    // The part that had no header now has one, with its blank line.
    assert!(text.contains("--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\naaaa"));
    // The header that ended without a blank line gets one.
    assert!(text.contains(
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbbbb"
    ));
}

#[test]
fn existing_encodings_are_rewrapped_not_double_encoded() {
    use base64::Engine;
    let data: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let qp_long = format!("{}=3D=C3=A9 end", long('q', 2000));
    let msg = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{qp_long}\r\nsecond=\r\n line\r\n--b--\r\n"
    );
    let (fixed, plan) = check(msg.as_bytes(), LONG);
    assert_eq!(
        plan.actions.values().copied().collect::<Vec<_>>(),
        vec![Action::Rewrap, Action::Requote]
    );
    let text = String::from_utf8(fixed).unwrap();
    assert_eq!(text.matches("Content-Transfer-Encoding: base64").count(), 1);
}

#[test]
fn encapsulated_messages_are_walked() {
    let msg = format!(
        "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\nSubject: inner\r\nX-Long: {} {}\r\n\r\n{}\r\n--b--\r\n",
        long('h', 600),
        long('i', 600),
        long('m', 1500)
    );
    let (fixed, plan) = check(msg.as_bytes(), LONG);
    assert_eq!(plan.actions.len(), 1);
    let text = String::from_utf8(fixed).unwrap();
    // The inner header line is folded, the inner body gets its own encoding field.
    assert!(text.contains(&format!(
        "X-Long: {}\r\n {}",
        long('h', 600),
        long('i', 600)
    )));
    assert!(text.contains("Subject: inner\r\n"));
}

#[test]
fn eight_bit_parts_become_seven_bit() {
    let msg = "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b--\r\n";
    let policy = Policy {
        long_lines: true,
        eight_bit: true,
    };
    let (fixed, plan) = check(msg.as_bytes(), policy);
    assert_eq!(plan.actions.len(), 1);
    assert!(fixed.iter().all(|b| *b < 0x80));
}

#[test]
fn what_cannot_be_fixed_is_named() {
    let msg = format!(
        "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nX-Huge: {}\r\n\r\nx\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n{}\r\n--b--\r\n",
        long('n', 1200),
        long('u', 1100)
    );
    let problems = fix(msg.as_bytes(), LONG, 100).unwrap_err();
    assert_eq!(
        problems,
        vec![
            Problem::Unfoldable { line: 3, len: 1208 },
            Problem::UnknownEncoding {
                line: 9,
                encoding: "x-uuencode".into()
            }
        ]
    );
}

#[test]
fn random_trees_decode_the_same() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..200 {
        let mut body = Vec::new();
        let top = random_entity(&mut rng, 0, &mut body);
        let mut msg = format!("From: a@example.com\r\nMIME-Version: 1.0\r\n{top}\r\n").into_bytes();
        msg.extend_from_slice(&body);
        let policy = Policy {
            long_lines: true,
            eight_bit: rng.random_bool(0.5),
        };
        let (fixed, _) = fix(&msg, policy, rng.random_range(1..3000))
            .unwrap_or_else(|p| panic!("round {round}: {p:?}\n{}", String::from_utf8_lossy(&msg)));
        assert!(max_line(&fixed) <= 998, "round {round}");
        if policy.eight_bit {
            assert_leaf_bodies_seven_bit(&fixed, &format!("round {round}"));
        }
        assert_eq!(
            leaves(&fixed),
            leaves(&msg),
            "round {round}\n{}\n----\n{}",
            String::from_utf8_lossy(&msg),
            String::from_utf8_lossy(&fixed)
        );
    }
}

/// A random entity: its header fields (returned) and its body (appended).
fn random_entity(rng: &mut impl Rng, depth: usize, body: &mut Vec<u8>) -> String {
    if depth < 3 && rng.random_bool(0.4) {
        let boundary = format!("=_b{depth}_{}", rng.random_range(0..1000));
        let n = rng.random_range(1..4);
        body.extend_from_slice(b"preamble\r\n");
        for _ in 0..n {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut inner = Vec::new();
            let h = random_entity(rng, depth + 1, &mut inner);
            body.extend_from_slice(format!("{h}\r\n").as_bytes());
            body.extend_from_slice(&inner);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        return format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n");
    }
    let (ct, binary) = match rng.random_range(0..3) {
        0 => ("text/plain; charset=utf-8", false),
        1 => ("text/html; charset=utf-8", false),
        _ => ("application/octet-stream", true),
    };
    let lines = rng.random_range(1..5);
    for i in 0..lines {
        let len = if rng.random_bool(0.3) {
            rng.random_range(999..3000)
        } else {
            rng.random_range(0..100)
        };
        let line: String = (0..len)
            .map(|_| match rng.random_range(0..20) {
                0 => ' ',
                1 => '\u{e9}',
                2 => '=',
                3 => '\t',
                _ => 'w',
            })
            .collect();
        body.extend_from_slice(line.as_bytes());
        if i + 1 < lines {
            body.extend_from_slice(b"\r\n");
        }
    }
    let cte = if binary || rng.random_bool(0.5) {
        "8bit"
    } else {
        "7bit"
    };
    format!("Content-Type: {ct}\r\nContent-Transfer-Encoding: {cte}\r\n")
}

/// The fuzz target's property on random byte soup built from MIME-ish pieces: no panic, the
/// same output however the body is cut, and no line over 998 bytes when the survey found
/// nothing it cannot fix.
#[test]
fn byte_soup_never_panics_and_does_not_depend_on_the_cut() {
    const PIECES: &[&str] = &[
        "--b\r\n",
        "--b--\r\n",
        "--c\r\n",
        "Content-Type: multipart/mixed; boundary=c\r\n",
        "Content-Type: message/rfc822\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",
        "\r\n",
        " folded\r\n",
        "x=",
        "=3D",
        "\u{e9}",
        "\t",
        "  ",
        "word ",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for round in 0..300 {
        let mut body = Vec::new();
        for _ in 0..rng.random_range(0..60) {
            if rng.random_bool(0.05) {
                body.extend(std::iter::repeat_n(b'L', rng.random_range(900..2500)));
            } else {
                body.extend_from_slice(PIECES[rng.random_range(0..PIECES.len())].as_bytes());
            }
        }
        let top = ContentType::parse(b" multipart/mixed; boundary=b\r\n");
        let policy = Policy {
            long_lines: true,
            eight_bit: rng.random_bool(0.5),
        };
        let run = |piece: usize| {
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
            out.extend_from_slice(&rewrite.finish().2);
            Some(out)
        };
        let whole = run(body.len().max(1));
        assert_eq!(whole, run(rng.random_range(1..50)), "round {round}");
        if let Some(out) = whole {
            assert!(max_line(&out) <= 998, "round {round}");
        }
    }
}

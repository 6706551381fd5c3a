//! The body of one leaf part in the walk: what the survey notes about its lines, and how the
//! rewrite writes it (as it came, quoted-printable, quoted-printable again, or base64
//! re-wrapped).

use super::{qp, Action, Encoding, Piece, Problem, Walk, MAX_LINE};
use crate::mime::scan::has_eight_bit;

#[derive(Debug)]
pub(super) struct Leaf {
    pub(super) entity: u64,
    pub(super) text: bool,
    pub(super) encoding: Encoding,
    pub(super) action: Option<Action>,
    // Survey.
    long: bool,
    eight_bit: bool,
    first_long_line: u64,
    // Rewrite.
    encoder: qp::Encoder,
    /// The last line's CRLF, not yet written: content, or the boundary's.
    pending_eol: bool,
    /// The last quoted-printable line ended in a soft break.
    soft: bool,
    /// Base64 characters of the output line being built.
    b64: Vec<u8>,
    /// Undecoded quoted-printable bytes carried to the next piece.
    carry: Vec<u8>,
}

impl Leaf {
    pub(super) fn new(entity: u64, text: bool, encoding: Encoding, action: Option<Action>) -> Leaf {
        Leaf {
            entity,
            text,
            encoding,
            action,
            long: false,
            eight_bit: false,
            first_long_line: 0,
            encoder: qp::Encoder::new(),
            pending_eol: false,
            soft: false,
            b64: Vec::new(),
            carry: Vec::new(),
        }
    }
}

impl Walk {
    pub(super) fn leaf_line(&mut self, leaf: &mut Leaf, line: &[u8], kind: Piece) {
        let (content, eol) = match line.strip_suffix(b"\r\n") {
            Some(c) if kind.ends() => (c, true),
            _ => (line, false),
        };
        if !self.rewrite {
            if !leaf.eight_bit && has_eight_bit(content) {
                leaf.eight_bit = true;
            }
            // Pieces only come for lines over LINE_CAP: long by definition.
            if (kind == Piece::Whole && content.len() > MAX_LINE) || kind == Piece::First {
                if !leaf.long {
                    leaf.first_long_line = self.line_no;
                }
                leaf.long = true;
            }
            return;
        }
        let out = &mut self.out;
        match leaf.action {
            None => out.extend_from_slice(line),
            Some(Action::Quote { text }) => {
                if kind.starts() && leaf.pending_eol {
                    if text {
                        leaf.encoder.hard_break(out);
                    } else {
                        leaf.encoder.write(b"\r\n", out);
                    }
                }
                leaf.encoder.write(content, out);
                if kind.ends() {
                    leaf.pending_eol = eol;
                }
            }
            Some(Action::Requote) => {
                if kind.starts() && leaf.pending_eol && !leaf.soft {
                    leaf.encoder.hard_break(out);
                }
                let mut decoded = Vec::with_capacity(content.len());
                leaf.carry.extend_from_slice(content);
                if kind.ends() {
                    let whole = std::mem::take(&mut leaf.carry);
                    leaf.soft = qp::decode_line(&whole, &mut decoded);
                    leaf.pending_eol = eol;
                } else {
                    // Decode all but a possible escape cut at the piece's end.
                    let keep = leaf
                        .carry
                        .iter()
                        .rev()
                        .take(2)
                        .position(|b| *b == b'=')
                        .map_or(0, |p| p + 1);
                    let upto = leaf.carry.len() - keep;
                    let head: Vec<u8> = leaf.carry.drain(..upto).collect();
                    qp::decode_escapes(&head, &mut decoded);
                }
                leaf.encoder.write(&decoded, out);
            }
            Some(Action::Rewrap) => {
                for &b in content {
                    if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') {
                        leaf.b64.push(b);
                        if leaf.b64.len() == qp::MAX_ENCODED_LINE {
                            out.extend_from_slice(&leaf.b64);
                            out.extend_from_slice(b"\r\n");
                            leaf.b64.clear();
                        }
                    }
                }
                if kind.ends() {
                    leaf.pending_eol = eol;
                }
            }
        }
    }

    pub(super) fn end_leaf(&mut self, mut leaf: Leaf) {
        if !self.rewrite {
            let wanted =
                (leaf.long && self.policy.long_lines) || (leaf.eight_bit && self.policy.eight_bit);
            if !wanted {
                return;
            }
            let action = match &leaf.encoding {
                e if e.is_identity() => Action::Quote { text: leaf.text },
                Encoding::QuotedPrintable => Action::Requote,
                Encoding::Base64 => Action::Rewrap,
                Encoding::Other(name) => {
                    if leaf.long {
                        self.problems.push(Problem::UnknownEncoding {
                            line: leaf.first_long_line,
                            encoding: name.clone(),
                        });
                    }
                    return;
                }
                _ => return,
            };
            self.plan.actions.insert(leaf.entity, action);
            return;
        }
        let out = &mut self.out;
        match leaf.action {
            None | Some(Action::Rewrap) if leaf.b64.is_empty() => {}
            None => {}
            Some(Action::Quote { .. }) | Some(Action::Requote) => {
                if !leaf.carry.is_empty() {
                    let mut decoded = Vec::new();
                    qp::decode_line(&leaf.carry, &mut decoded);
                    leaf.encoder.write(&decoded, out);
                }
                leaf.encoder.finish(out);
                if leaf.pending_eol {
                    out.extend_from_slice(b"\r\n");
                }
            }
            Some(Action::Rewrap) => {
                // The last full line already ended in CRLF; a partial one gets its own.
                out.extend_from_slice(&leaf.b64);
                if leaf.pending_eol {
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

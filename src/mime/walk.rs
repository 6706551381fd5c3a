//! The MIME structure of a body, walked line by line in one streaming pass (RFC 2045, 2046),
//! as real-world mail is built: nested multiparts, parts whose closing delimiter never comes
//! (an outer boundary or the end of the message closes them), preamble and epilogue, parts
//! with no header (or a header that ends without its blank line), encapsulated messages
//! (`message/rfc822`, whose own header and parts are walked), `multipart/digest` defaults.
//!
//! The same walk runs twice over a message that needs fixing, each time from the spool:
//! - [`Walk::survey`] looks at every leaf part and decides what to do with it ([`Plan`]): a
//!   7bit/8bit/binary part holding a line over 998 bytes (or 8-bit bytes, when asked) becomes
//!   quoted-printable; a quoted-printable part with such lines is decoded and encoded again; a
//!   base64 part with such lines is re-wrapped. What cannot be fixed is a [`Problem`].
//! - [`Walk::rewrite`] writes the body again with that plan: each chosen part's body encoded,
//!   its Content-Transfer-Encoding field replaced (or added), every other byte as it came,
//!   except over-long lines outside leaf bodies (a part's header lines are folded at white
//!   space; preamble and epilogue lines, which no reader shows, are split).
//!
//! Lines are assembled up to `LINE_CAP` bytes; a longer line is handled in pieces, so memory
//! stays bounded whatever the message. Entities are numbered in the order their header
//! starts (the message itself is 0); both passes number them the same way.
//! Pure: bytes in, bytes out.

use super::fields::{ContentType, Encoding};
use super::qp;
use super::scan::MAX_LINE;
use leaf::Leaf;
use std::collections::BTreeMap;

/// Lines up to this long are handled whole; longer ones in pieces (never boundaries or
/// header fields).
const LINE_CAP: usize = 64 * 1024;
/// A header field kept whole up to this size (to read Content-Type and
/// Content-Transfer-Encoding); a longer one passes through unread.
const FIELD_CAP: usize = 64 * 1024;
/// Multiparts nested deeper than this are not walked.
const MAX_DEPTH: usize = 64;
/// The field that replaces a re-encoded part's Content-Transfer-Encoding.
pub const QP_FIELD: &[u8] = b"Content-Transfer-Encoding: quoted-printable\r\n";

/// What to re-encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Parts with a line over 998 bytes.
    pub long_lines: bool,
    /// Parts with 8-bit bytes.
    pub eight_bit: bool,
}

impl Policy {
    /// Anything to re-encode at all.
    pub fn any(&self) -> bool {
        self.long_lines || self.eight_bit
    }
}

/// What happens to one leaf part's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An identity-encoded part becomes quoted-printable; `text`: its CRLFs are line breaks
    /// (hard breaks in the encoding), else bytes (`=0D=0A`).
    Quote { text: bool },
    /// A quoted-printable part is decoded and encoded again (the same decoded bytes).
    Requote,
    /// A base64 part is wrapped again at 76 characters.
    Rewrap,
}

/// Why a body cannot be made fit for SMTP. Line numbers count body lines from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A header line of a part over 998 bytes without white space to fold it at.
    Unfoldable { line: u64, len: u64 },
    /// A part in an encoding we cannot re-encode (`x-uuencode`...) holds a long line.
    UnknownEncoding { line: u64, encoding: String },
    /// Multiparts nested deeper than we walk.
    TooDeep { line: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unfoldable { line, len } => write!(
                f,
                "Line {line} of the body is a MIME part header line of {len} bytes with no place to fold it; SMTP allows 998"
            ),
            Problem::UnknownEncoding { line, encoding } => write!(
                f,
                "Line {line} of the body is over 998 bytes in a part with Content-Transfer-Encoding {encoding}, which cannot be re-encoded"
            ),
            Problem::TooDeep { line } => write!(
                f,
                "MIME parts are nested more than {MAX_DEPTH} deep (line {line} of the body)"
            ),
        }
    }
}

/// What the survey decided, per entity number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: BTreeMap<u64, Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// What happens to the message's own body, when it is not a multipart.
    pub fn top_level(&self) -> Option<Action> {
        self.actions.get(&0).copied()
    }
}

/// Where a line stands in its line (see `LINE_CAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Whole,
    First,
    Middle,
    Last,
}

impl Piece {
    fn starts(self) -> bool {
        matches!(self, Piece::Whole | Piece::First)
    }
    fn ends(self) -> bool {
        matches!(self, Piece::Whole | Piece::Last)
    }
}

#[derive(Debug)]
struct Frame {
    boundary: Vec<u8>,
    digest: bool,
    closed: bool,
}

#[derive(Debug)]
struct Header {
    entity: u64,
    content_type: Option<ContentType>,
    encoding: Option<Encoding>,
    default_type: ContentType,
    /// The field being read (its lines so far), and whether it is kept whole.
    field: Vec<u8>,
    /// A Content-Transfer-Encoding field was replaced already.
    replaced: bool,
    /// The current field grew past `FIELD_CAP`: its lines go through unread.
    passthrough: bool,
    /// Lines of the header so far (0: a non-field line means the part has no header).
    lines: u64,
}

#[derive(Debug)]
enum State {
    Header(Header),
    Leaf(Leaf),
    /// Preamble or epilogue of the innermost multipart, or lines after everything closed.
    Filler,
}

/// One pass over a body.
#[derive(Debug)]
pub struct Walk {
    rewrite: bool,
    policy: Policy,
    plan: Plan,
    problems: Vec<Problem>,
    stack: Vec<Frame>,
    state: State,
    next_entity: u64,
    line_no: u64,
    partial: Vec<u8>,
    in_piece: bool,
    /// Characters written on the current preamble or epilogue line.
    filler_column: usize,
    /// Rewritten bytes, for the caller to take.
    pub out: Vec<u8>,
}

impl Walk {
    /// The first pass: decide per part. `top_type`/`top_encoding` come from the message's
    /// own header section (`None`: no Content-Type field).
    pub fn survey(top_type: Option<ContentType>, top_encoding: Encoding, policy: Policy) -> Walk {
        Walk::new(false, policy, Plan::default(), top_type, top_encoding)
    }

    /// The second pass: write the body again following `plan`.
    pub fn rewrite(top_type: Option<ContentType>, top_encoding: Encoding, plan: Plan) -> Walk {
        Walk::new(true, Policy::default(), plan, top_type, top_encoding)
    }

    fn new(
        rewrite: bool,
        policy: Policy,
        plan: Plan,
        top_type: Option<ContentType>,
        top_encoding: Encoding,
    ) -> Walk {
        let mut w = Walk {
            rewrite,
            policy,
            plan,
            problems: Vec::new(),
            stack: Vec::new(),
            state: State::Filler,
            next_entity: 1,
            line_no: 0,
            partial: Vec::new(),
            in_piece: false,
            filler_column: 0,
            out: Vec::new(),
        };
        w.begin_body(
            0,
            top_type.unwrap_or_else(ContentType::text_plain),
            top_encoding,
        );
        w
    }

    /// Take the next bytes of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let room = LINE_CAP - self.partial.len();
            let look = chunk.len().min(room);
            match memchr::memchr(b'\n', &chunk[..look]) {
                Some(p) => {
                    self.partial.extend_from_slice(&chunk[..=p]);
                    chunk = &chunk[p + 1..];
                    let kind = if self.in_piece {
                        Piece::Last
                    } else {
                        Piece::Whole
                    };
                    self.in_piece = false;
                    self.take_line(kind);
                }
                None if chunk.len() < room => {
                    self.partial.extend_from_slice(chunk);
                    return;
                }
                None => {
                    // Keep a CR with its LF: cut before it.
                    let mut cut = room;
                    if chunk[cut - 1] == b'\r' && cut > 1 {
                        cut -= 1;
                    }
                    self.partial.extend_from_slice(&chunk[..cut]);
                    chunk = &chunk[cut..];
                    let kind = if self.in_piece {
                        Piece::Middle
                    } else {
                        Piece::First
                    };
                    self.in_piece = true;
                    self.take_line(kind);
                }
            }
        }
    }

    fn take_line(&mut self, kind: Piece) {
        let line = std::mem::take(&mut self.partial);
        if kind.starts() {
            self.line_no += 1;
        }
        self.line(&line, kind);
        self.partial = line;
        self.partial.clear();
    }

    /// The end of the body. Returns the plan (survey) and the problems found.
    pub fn finish(mut self) -> (Plan, Vec<Problem>, Vec<u8>) {
        if !self.partial.is_empty() || self.in_piece {
            let kind = if self.in_piece {
                Piece::Last
            } else {
                Piece::Whole
            };
            self.in_piece = false;
            self.take_line(kind);
        }
        let state = std::mem::replace(&mut self.state, State::Filler);
        self.end_state(state);
        (self.plan, self.problems, self.out)
    }

    /// Does this whole line delimit a part of an open multipart? (frame index, closing)
    fn delimiter(&self, line: &[u8]) -> Option<(usize, bool)> {
        let rest = line.strip_prefix(b"--")?;
        let content = rest.strip_suffix(b"\n").unwrap_or(rest);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let mut end = content.len();
        while end > 0 && matches!(content[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let content = &content[..end];
        for (i, f) in self.stack.iter().enumerate().rev() {
            if f.closed {
                continue;
            }
            if let Some(tail) = content.strip_prefix(&f.boundary[..]) {
                match tail {
                    b"" => return Some((i, false)),
                    b"--" => return Some((i, true)),
                    _ => {}
                }
            }
        }
        None
    }

    fn line(&mut self, line: &[u8], kind: Piece) {
        if kind == Piece::Whole && !self.stack.is_empty() {
            if let Some((frame, closing)) = self.delimiter(line) {
                let state = std::mem::replace(&mut self.state, State::Filler);
                self.end_state(state);
                self.stack.truncate(frame + 1);
                self.emit_delimiter(line);
                if closing {
                    self.stack[frame].closed = true;
                } else {
                    let default_type = if self.stack[frame].digest {
                        ContentType::message_rfc822()
                    } else {
                        ContentType::text_plain()
                    };
                    self.start_header(default_type);
                }
                return;
            }
        }
        let state = std::mem::replace(&mut self.state, State::Filler);
        self.state = match state {
            State::Header(h) => self.header_line(h, line, kind),
            State::Leaf(mut leaf) => {
                self.leaf_line(&mut leaf, line, kind);
                State::Leaf(leaf)
            }
            State::Filler => {
                self.filler_line(line, kind);
                State::Filler
            }
        };
    }

    fn emit_delimiter(&mut self, line: &[u8]) {
        if !self.rewrite {
            return;
        }
        if line.len() > MAX_LINE + 2 {
            // Transport padding past the limit: it is not content, drop it.
            let mut end = line.len();
            while end > 0 && matches!(line[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
                end -= 1;
            }
            self.out.extend_from_slice(&line[..end]);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.out.extend_from_slice(line);
        }
    }

    fn start_header(&mut self, default_type: ContentType) {
        let entity = self.next_entity;
        self.next_entity += 1;
        self.state = State::Header(Header {
            entity,
            content_type: None,
            encoding: None,
            default_type,
            field: Vec::new(),
            replaced: false,
            passthrough: false,
            lines: 0,
        });
    }

    /// What the entity's body is, once its header is known.
    fn begin_body(&mut self, entity: u64, ct: ContentType, encoding: Encoding) {
        if ct.is_multipart() {
            if self.stack.len() >= MAX_DEPTH {
                self.problems.push(Problem::TooDeep { line: self.line_no });
                self.state = State::Filler;
                return;
            }
            let digest = ct.mime_type == "multipart/digest";
            self.stack.push(Frame {
                boundary: ct.boundary.unwrap_or_default(),
                digest,
                closed: false,
            });
            self.state = State::Filler;
        } else if ct.is_message() && encoding.is_identity() {
            self.start_header(ContentType::text_plain());
        } else {
            let action = self.plan.actions.get(&entity).copied();
            self.state = State::Leaf(Leaf::new(entity, ct.is_text(), encoding, action));
        }
    }

    fn header_line(&mut self, mut h: Header, line: &[u8], kind: Piece) -> State {
        if kind != Piece::Whole {
            // A header line this long cannot be kept whole to fold: refused by the survey.
            if kind.starts() {
                self.problems.push(Problem::Unfoldable {
                    line: self.line_no,
                    len: LINE_CAP as u64,
                });
            }
            return State::Header(h);
        }
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            self.end_field(&mut h);
            self.end_header_fields(&h);
            if self.rewrite {
                self.out.extend_from_slice(line);
            }
            let ct = h.content_type.unwrap_or(h.default_type);
            self.begin_body(h.entity, ct, h.encoding.unwrap_or(Encoding::SevenBit));
            return std::mem::replace(&mut self.state, State::Filler);
        }
        if matches!(content[0], b' ' | b'\t') && h.lines > 0 {
            h.lines += 1;
            self.field_line(&mut h, line);
            return State::Header(h);
        }
        if is_field_start(content) {
            self.end_field(&mut h);
            h.lines += 1;
            self.field_line(&mut h, line);
            return State::Header(h);
        }
        // Not a header line: the header ended without its blank line (or the part has none);
        // this line is the first of the body.
        self.end_field(&mut h);
        self.end_header_fields(&h);
        if self.rewrite && self.plan.actions.get(&h.entity).is_some_and(quotes) {
            // The added field needs a header to live in: end it properly.
            self.out.extend_from_slice(b"\r\n");
        }
        let ct = h.content_type.unwrap_or(h.default_type);
        self.begin_body(h.entity, ct, h.encoding.unwrap_or(Encoding::SevenBit));
        self.line(line, kind);
        std::mem::replace(&mut self.state, State::Filler)
    }

    fn field_line(&mut self, h: &mut Header, line: &[u8]) {
        let content_len = line.len() - line.ends_with(b"\r\n") as usize * 2;
        if content_len > MAX_LINE && !self.rewrite && fold_line(&line[..content_len]).is_none() {
            self.problems.push(Problem::Unfoldable {
                line: self.line_no,
                len: content_len as u64,
            });
        }
        if h.passthrough {
            self.write_field_lines(line);
        } else if h.field.len() + line.len() <= FIELD_CAP {
            h.field.extend_from_slice(line);
        } else {
            // Too large to read: what we have and the rest go through as they are.
            h.passthrough = true;
            let field = std::mem::take(&mut h.field);
            self.write_field_lines(&field);
            self.write_field_lines(line);
        }
    }

    /// A whole field has been read: note what it says, and write it (or its replacement).
    fn end_field(&mut self, h: &mut Header) {
        h.passthrough = false;
        if h.field.is_empty() {
            return;
        }
        let field = std::mem::take(&mut h.field);
        let colon = field.iter().position(|b| *b == b':').unwrap_or(0);
        let name = field[..colon].trim_ascii();
        let value = &field[(colon + 1).min(field.len())..];
        let mut replace = false;
        if name.eq_ignore_ascii_case(b"Content-Type") {
            if h.content_type.is_none() {
                h.content_type = ContentType::parse(value);
            }
        } else if name.eq_ignore_ascii_case(b"Content-Transfer-Encoding") {
            if h.encoding.is_none() {
                h.encoding = Some(Encoding::parse(value));
            }
            replace = self.rewrite && self.plan.actions.get(&h.entity).is_some_and(quotes);
        }
        if replace {
            if !h.replaced {
                self.out.extend_from_slice(QP_FIELD);
            }
            h.replaced = true;
        } else {
            self.write_field_lines(&field);
        }
    }

    /// The header is over: a quoted part that had no Content-Transfer-Encoding gets one.
    fn end_header_fields(&mut self, h: &Header) {
        if self.rewrite && !h.replaced && self.plan.actions.get(&h.entity).is_some_and(quotes) {
            self.out.extend_from_slice(QP_FIELD);
        }
    }

    /// Header lines as they came, over-long ones folded at white space.
    fn write_field_lines(&mut self, lines: &[u8]) {
        if !self.rewrite {
            return;
        }
        for line in lines.split_inclusive(|b| *b == b'\n') {
            let body = line.strip_suffix(b"\r\n").unwrap_or(line);
            if body.len() <= MAX_LINE {
                self.out.extend_from_slice(line);
                continue;
            }
            match fold_line(body) {
                Some(folded) => self.out.extend_from_slice(&folded),
                // The survey refused such a line: never reached in a rewrite it planned.
                None => self.out.extend_from_slice(body),
            }
            self.out.extend_from_slice(&line[body.len()..]);
        }
    }

    fn filler_line(&mut self, line: &[u8], kind: Piece) {
        if !self.rewrite {
            return;
        }
        // Preamble and epilogue are shown by no reader: a line too long is split.
        if kind.starts() {
            self.filler_column = 0;
        }
        let (content, eol) = match line.strip_suffix(b"\r\n") {
            Some(c) if kind.ends() => (c, &b"\r\n"[..]),
            _ => (line, &b""[..]),
        };
        let mut rest = content;
        while !rest.is_empty() {
            if self.filler_column == MAX_LINE {
                self.out.extend_from_slice(b"\r\n");
                self.filler_column = 0;
            }
            let take = rest.len().min(MAX_LINE - self.filler_column);
            self.out.extend_from_slice(&rest[..take]);
            self.filler_column += take;
            rest = &rest[take..];
        }
        self.out.extend_from_slice(eol);
    }

    /// The state ends (a delimiter, or the end of the body).
    fn end_state(&mut self, state: State) {
        match state {
            State::Header(mut h) => {
                self.end_field(&mut h);
                self.end_header_fields(&h);
            }
            State::Leaf(leaf) => self.end_leaf(leaf),
            State::Filler => {}
        }
    }
}

fn quotes(a: &Action) -> bool {
    matches!(a, Action::Quote { .. })
}

/// Does a header line start a field (`name:` with a printable name)?
fn is_field_start(content: &[u8]) -> bool {
    match content.iter().position(|b| *b == b':') {
        Some(0) | None => false,
        Some(colon) => content[..colon].iter().all(|b| (33..=126).contains(b)),
    }
}

/// An over-long header line (without its CRLF) folded at white space so that no line is over
/// the limit: each fold puts a CRLF before a space or tab that follows something else (RFC
/// 5322 2.2.3; unfolding gives the line back). `None` when there is no such place.
fn fold_line(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len() + line.len() / 400 * 2 + 2);
    let mut rest = line;
    while rest.len() > MAX_LINE {
        let at = (1..=MAX_LINE)
            .rev()
            .find(|&i| matches!(rest[i], b' ' | b'\t') && !matches!(rest[i - 1], b' ' | b'\t'))?;
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[at..];
    }
    out.extend_from_slice(rest);
    Some(out)
}

mod leaf;
#[cfg(test)]
mod tests;

//! The rare path of a reception: a body that a receiver could refuse (a line over 998 bytes,
//! or 8-bit data under `limits.eight_bit: encode`) is made fit before it is signed, in two
//! streaming passes over the spool draft — never the whole message in memory. The first pass
//! (`mime::walk::Walk::survey`) decides which MIME parts to re-encode; the second writes a new
//! draft (Received, the header section with its changed MIME fields, the new body) and hashes
//! the new body for signing. Blocking file I/O: run it off the async workers.

use crate::dkim::message::BodyHashing;
use crate::mime::scan::{BodyFacts, BodyScan, LongLineFinder};
use crate::mime::walk::{Action, Policy, Problem, Walk};
use crate::mime::{scan, top};
use crate::smtp::header::parse_fields;
use crate::spool::{Draft, QueueId, Spool, SpoolError};

/// Why a body was re-encoded is what the walk was asked to re-encode: its `Policy` (each flag
/// a `reason` label of `dkim_relay_messages_reencoded_total`).
pub(crate) type Reasons = Policy;

/// For the log line: `long_lines`, `eight_bit`, both, or `no`.
pub(crate) fn shown(reasons: Reasons) -> String {
    let mut v = Vec::new();
    if reasons.long_lines {
        v.push("long_lines");
    }
    if reasons.eight_bit {
        v.push("eight_bit");
    }
    if v.is_empty() {
        v.push("no");
    }
    v.join(",")
}

/// The message as received, on disk.
pub(crate) struct Received {
    pub draft: Draft,
    /// The Received field the draft starts with.
    pub received: Vec<u8>,
    /// The header section after fix-ups (what follows Received), without the blank line.
    pub header_section: Vec<u8>,
}

impl Received {
    fn body_offset(&self) -> u64 {
        (self.received.len() + self.header_section.len() + 2) as u64
    }
}

/// A re-encoded message, ready to sign.
pub(crate) struct Rewritten {
    pub draft: Draft,
    pub header_section: Vec<u8>,
    pub body: BodyHashing,
    /// 8-bit bytes are left (in the header section or where nothing could encode them).
    pub eight_bit: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReencodeError {
    /// The body cannot be made fit: the client hears why.
    #[error("{0}")]
    Unfixable(Problem),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the re-encoded body still has a line of {0} bytes")]
    StillLong(u64),
    #[error("the header section cannot be read again")]
    Header,
}

/// Read the body part of the draft piece by piece.
fn each_body_piece(msg: &mut Received, f: impl FnMut(&[u8]) -> bool) -> Result<(), SpoolError> {
    let offset = msg.body_offset();
    msg.draft.read_from(offset, f)
}

/// The first line over 998 bytes: (line number, length), for `limits.long_lines: reject`.
pub(crate) fn first_long_line(msg: &mut Received) -> Result<Option<(u64, u64)>, SpoolError> {
    let mut finder = LongLineFinder::default();
    let mut found = None;
    each_body_piece(msg, |piece| {
        found = finder.write(piece);
        found.is_none()
    })?;
    Ok(found.or_else(|| finder.finish()))
}

/// Re-encode what `policy` asks for. `Ok(None)`: nothing needed re-encoding after all (8-bit
/// bytes only in places no encoding covers, such as a part's header): keep the draft.
pub(crate) fn reencode(
    spool: &Spool,
    id: &QueueId,
    msg: &mut Received,
    policy: Policy,
    mut body: BodyHashing,
) -> Result<Option<Rewritten>, ReencodeError> {
    // Checked at reception already; refused rather than guessed if that ever changes.
    let section = msg.header_section.clone();
    let fields = parse_fields(&section).map_err(|_| ReencodeError::Header)?;
    let (content_type, encoding) = top::body_type(&fields);

    let mut survey = Walk::survey(content_type.clone(), encoding.clone(), policy);
    let mut eight_bit_body = false;
    each_body_piece(msg, |piece| {
        eight_bit_body |= scan::has_eight_bit(piece);
        survey.feed(piece);
        true
    })?;
    let (plan, problems, _) = survey.finish();
    if let Some(p) = problems.into_iter().next() {
        return Err(ReencodeError::Unfixable(p));
    }
    if plan.is_empty() {
        return Ok(None);
    }

    let header_section = match plan.top_level() {
        Some(Action::Quote { .. }) => top::quoted_printable_section(&fields, eight_bit_body),
        _ => section.clone(),
    };
    let mut draft = spool.rewrite_draft(id.clone())?;
    for part in [&msg.received[..], &header_section, b"\r\n"] {
        draft.write(part)?;
    }
    let mut rewrite = Walk::rewrite(content_type, encoding, plan);
    let mut check = BodyScan::new();
    let mut failed = None;
    let mut emit = |bytes: &[u8], draft: &mut Draft| {
        if bytes.is_empty() {
            return;
        }
        check.write(bytes);
        body.write(bytes);
        if let Err(e) = draft.write(bytes) {
            failed.get_or_insert(e);
        }
    };
    each_body_piece(msg, |piece| {
        rewrite.feed(piece);
        emit(&rewrite.out, &mut draft);
        rewrite.out.clear();
        true
    })?;
    let (_, _, rest) = rewrite.finish();
    emit(&rest, &mut draft);
    if let Some(e) = failed {
        return Err(e.into());
    }
    let BodyFacts {
        longest_over,
        eight_bit,
    } = check.finish();
    if longest_over > 0 {
        return Err(ReencodeError::StillLong(longest_over));
    }
    Ok(Some(Rewritten {
        draft,
        eight_bit: eight_bit || scan::has_eight_bit(&header_section),
        header_section,
        body,
    }))
}

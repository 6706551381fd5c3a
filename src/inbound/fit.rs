//! The end of a body, before it is signed: fit for any standards-following receiver. A line
//! over 998 bytes is refused (`limits.long_lines: reject`, naming the line) or its MIME part
//! re-encoded (`encode`), and so are 8-bit parts under `limits.eight_bit: encode`; the
//! re-encoding itself is `reencode.rs`, run off the async workers.

use super::receive::{Body, Reception};
use super::reencode::{self, Reasons, ReencodeError};
use super::refusal::Refusal;
use crate::config::{EightBit, LongLines};
use crate::dkim::message::{BodyHashing, MessageSigning};
use crate::metrics::RejectReason;
use crate::mime::walk::Problem;
use std::time::Instant;

impl<'c> Reception<'c> {
    /// Make the body fit for any standards-following receiver before it is signed: a line over
    /// 998 bytes is refused (`limits.long_lines: reject`) or its MIME part re-encoded
    /// (`encode`); under `limits.eight_bit: encode` so are 8-bit parts. The rare re-encoding
    /// reads the draft back twice and writes a new one, off the async workers.
    pub(super) async fn fit_for_smtp(
        &mut self,
        mut body: Body<'c>,
    ) -> Result<(Body<'c>, Reasons), Refusal> {
        let facts = std::mem::take(&mut body.scan).finish();
        let limits = &self.core.settings.limits;
        body.longest_line = facts.longest_over;
        body.eight_bit = body.header_eight_bit || facts.eight_bit;
        let mut received = reencode::Received {
            draft: body.draft,
            received: std::mem::take(&mut body.received),
            header_section: std::mem::take(&mut body.header_section),
        };
        if facts.has_long_lines() && limits.long_lines == LongLines::Reject {
            let found = tokio::task::spawn_blocking(move || {
                let found = reencode::first_long_line(&mut received);
                (found, received)
            })
            .await;
            let (line, len) = match found {
                Ok((Ok(Some(found)), _)) => found,
                // Not found again, or not readable: say what the scan saw.
                Ok(_) | Err(_) => (0, facts.longest_over),
            };
            let line = if line > 0 {
                format!("Line {line} of the body")
            } else {
                "A line of the body".to_string()
            };
            return Err(Refusal::new(
                RejectReason::LongLines,
                554,
                "5.6.0",
                format!("{line} is {len} bytes; SMTP allows 998 (send it encoded as quoted-printable or base64)"),
            ));
        }
        let reasons = Reasons {
            long_lines: facts.has_long_lines() && limits.long_lines == LongLines::Encode,
            eight_bit: facts.eight_bit && limits.eight_bit == EightBit::Encode,
        };
        if !reasons.any() {
            body.draft = received.draft;
            body.received = received.received;
            body.header_section = received.header_section;
            return Ok((body, reasons));
        }
        let spool = self.shared.spool.clone();
        let id = self.id.clone();
        let hashing = BodyHashing::for_signers(body.signers);
        let t = Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let result = reencode::reencode(&spool, &id, &mut received, reasons, hashing);
            (result, received)
        })
        .await;
        let (result, received) = match done {
            Ok(r) => r,
            Err(_) => return Err(Refusal::local_error("Internal error while re-encoding")),
        };
        match result {
            Ok(Some(rw)) => {
                // The draft as received goes (removed or recycled); the new one is signed.
                drop(received);
                tracing::debug!(queue_id = %self.id, reasons = %reencode::shown(reasons), took_us = t.elapsed().as_micros() as u64, "body re-encoded");
                body.draft = rw.draft;
                body.header_section = rw.header_section;
                body.signing = MessageSigning::with_body(body.signers, rw.body);
                body.eight_bit = rw.eight_bit;
                Ok((body, reasons))
            }
            Ok(None) => {
                // Nothing a Content-Transfer-Encoding could change (8-bit bytes only in a
                // part's header fields, say): the message goes as it came.
                body.draft = received.draft;
                body.received = received.received;
                body.header_section = received.header_section;
                Ok((body, Reasons::default()))
            }
            Err(ReencodeError::Unfixable(problem)) => {
                // A line no encoding can bring under 998 bytes counts as a long line; MIME
                // nested too deep to walk, as a header problem.
                let reason = match problem {
                    Problem::TooDeep { .. } => RejectReason::HeaderPolicy,
                    Problem::Unfoldable { .. } | Problem::UnknownEncoding { .. } => {
                        RejectReason::LongLines
                    }
                };
                Err(Refusal::new(reason, 554, "5.6.0", problem.to_string()))
            }
            Err(ReencodeError::Spool(e)) => {
                tracing::error!(queue_id = %self.id, error = %e, "re-encoding failed");
                Err(Refusal::spool(&e))
            }
            Err(e) => {
                // Our own walk left a line it should have encoded: never send it.
                tracing::error!(queue_id = %self.id, error = %e, "re-encoding failed");
                Err(Refusal::local_error(
                    "Local error in processing, try again later",
                ))
            }
        }
    }
}

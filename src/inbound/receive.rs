//! Receiving one message, as its bytes arrive: the header section is checked (structure, one
//! From with one allowed mailbox, singleton fields), fixed up (Bcc, Date, Message-ID, Received)
//! and handed to one DKIM signer per selector; the body then streams to the spool file, the
//! signers and our own body hasher at once, so a large message never sits whole in memory.
//! At the end: a body a receiver could refuse (a line over 998 bytes, or 8-bit data under
//! `eight_bit: encode`) is refused or re-encoded (`reencode.rs`, from the spool draft);
//! signatures made, each checked by self-verification (ours, and mail-auth's verifier over the
//! spooled bytes up to `dkim.independent_verify_max`), spool commit, then 250.

use super::budget::Reservation;
use super::policy::Identity;
use super::refusal::Refusal;
use super::Shared;
use crate::config::BareNewlines;
use crate::core::Core;
use crate::dkim::fixups::{self, Context, Trace};
use crate::dkim::independent::{self, KnownKeys};
use crate::dkim::message::{MessageSigning, SignError};
use crate::dkim::signer::SelectorSigner;
use crate::metrics::{Algorithm, ReencodeReason, RejectReason};
use crate::mime::scan::{self, BodyScan};
use crate::smtp::address::domain_of;
use crate::smtp::header::{check_section, Checked};
use crate::smtp::reply::{shown, Reply};
use crate::spool::{Committed, Draft, Envelope, InHand, QueueId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The envelope of a message being received: sender and recipients already passed policy.
pub(crate) struct AcceptedEnvelope {
    pub sender: String,
    pub recipients: Vec<String>,
    pub identity: Identity,
    pub smtputf8: bool,
}

/// Trace details for the Received field.
pub(crate) struct Arrival {
    pub helo: String,
    pub client_ip: Option<std::net::IpAddr>,
    pub protocol: &'static str,
}

pub(super) struct Body<'c> {
    pub draft: Draft,
    /// The Received field the draft starts with.
    pub received: Vec<u8>,
    /// The header section as it will be sent (after fix-ups), for self-verification.
    pub header_section: Vec<u8>,
    /// Every selector's signing: one body canonicalization and hash for all of them.
    pub signing: MessageSigning<'c>,
    pub signers: &'c [Arc<SelectorSigner>],
    signing_domain: String,
    /// Long lines and 8-bit bytes of the body, found as it streams in.
    pub scan: BodyScan,
    /// The header section holds 8-bit bytes.
    pub header_eight_bit: bool,
    /// The message needs SMTPUTF8 downstream: it was asked for, and an address of the
    /// envelope or the From field is not ASCII.
    needs_smtputf8: bool,
    /// Set once the body is final (`fit_for_smtp`): 8-bit bytes are in what will be sent,
    /// and the longest line the client sent when it was over 998 bytes (0 otherwise).
    pub eight_bit: bool,
    pub longest_line: u64,
}

/// A message on its way in.
pub(crate) struct Reception<'c> {
    pub(super) core: &'c Core,
    pub(super) shared: &'c Shared,
    pub id: QueueId,
    envelope: AcceptedEnvelope,
    arrival: Arrival,
    header_buf: Vec<u8>,
    /// The header buffer's (then its fixed-up copy's) share of `limits.buffer_memory`.
    held: Reservation<'c>,
    body: Option<Body<'c>>,
    refusal: Option<Refusal>,
    size: u64,
    signing_time: Duration,
    now_unix: i64,
}

impl<'c> Reception<'c> {
    pub fn new(
        core: &'c Core,
        shared: &'c Shared,
        envelope: AcceptedEnvelope,
        arrival: Arrival,
    ) -> Reception<'c> {
        let now_unix = crate::clock::unix_now();
        Reception {
            core,
            shared,
            id: QueueId::new(),
            envelope,
            arrival,
            header_buf: Vec::new(),
            held: shared.buffer_budget.reservation(),
            body: None,
            refusal: None,
            size: 0,
            signing_time: Duration::ZERO,
            now_unix,
        }
    }

    /// The refusal already decided, if any (the rest of the data is only drained).
    pub fn refusal(&self) -> Option<&Reply> {
        self.refusal.as_ref().map(|r| &r.reply)
    }

    /// Count and log a refusal.
    fn rejected(&self, refusal: &Refusal) {
        self.shared.metrics.rejected(refusal.reason);
        tracing::warn!(queue_id = %self.id, client = %self.envelope.identity.name, reply = %refusal.reply, "rejected");
    }

    fn refuse(&mut self, refusal: Refusal) {
        if self.refusal.is_none() {
            self.rejected(&refusal);
            self.refusal = Some(refusal);
        }
        // Drop the draft (its file is removed) and the signers.
        self.body = None;
        self.header_buf = Vec::new();
        let _ = self.held.resize(0);
    }

    /// Take message bytes (already unstuffed and CRLF-normalised).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        let limit = self.core.settings.limits.max_message_size;
        if self.size > limit && self.refusal.is_none() {
            self.refuse(Refusal::new(
                RejectReason::Size,
                552,
                "5.3.4",
                format!("Message size exceeds fixed maximum message size ({limit} bytes)"),
            ));
        }
        if self.refusal.is_some() {
            return;
        }
        if self.body.is_some() {
            self.write_body(bytes);
            return;
        }
        if !self.room_for_header(bytes.len()) {
            return;
        }
        let scan_from = self.header_buf.len().saturating_sub(3);
        self.header_buf.extend_from_slice(bytes);
        let boundary = if self.header_buf.starts_with(b"\r\n") {
            Some(0)
        } else {
            memchr::memmem::find(&self.header_buf[scan_from..], b"\r\n\r\n")
                .map(|p| scan_from + p + 2)
        };
        let max_header = self.core.settings.limits.max_header_size;
        match boundary {
            // However the bytes were chunked: a section found whole in one read counts too.
            Some(end) if end as u64 > max_header => {
                self.refuse(Refusal::header("Header section too large"));
            }
            Some(end) => {
                let buf = std::mem::take(&mut self.header_buf);
                let (section, rest) = buf.split_at(end);
                self.begin_body(section, &rest[2..]);
            }
            None if self.header_buf.len() as u64 > max_header => {
                self.refuse(Refusal::header("Header section too large"));
            }
            None => {}
        }
    }

    /// Grow the header buffer for `more` bytes within the buffer budget (what is charged is
    /// its capacity, so growth is done here, by doubling up to the header limit); refuse the
    /// message with `451 4.3.2` when the budget has no room.
    fn room_for_header(&mut self, more: usize) -> bool {
        let need = self.header_buf.len().saturating_add(more);
        let cap = self.header_buf.capacity();
        if need <= cap {
            return true;
        }
        let ceiling = usize::try_from(self.core.settings.limits.max_header_size)
            .unwrap_or(usize::MAX)
            .saturating_add(16 * 1024);
        let grown = need.max(cap.saturating_mul(2).clamp(4096, ceiling));
        if self.held.resize(grown as u64).is_err() {
            self.shared
                .metrics
                .overload_refusal(crate::metrics::OverloadReason::BufferMemory);
            self.refuse(Refusal::new(
                RejectReason::BufferMemory,
                451,
                "4.3.2",
                "Too much mail being received at once, try again later",
            ));
            return false;
        }
        self.header_buf.reserve_exact(grown - self.header_buf.len());
        true
    }

    fn write_body(&mut self, bytes: &[u8]) {
        let Some(body) = self.body.as_mut() else {
            return;
        };
        if let Err(e) = body.draft.write(bytes) {
            self.refuse(Refusal::spool(&e));
            return;
        }
        let t = Instant::now();
        body.signing.write_body(bytes);
        self.signing_time += t.elapsed();
        body.scan.write(bytes);
    }

    /// The header section is complete: check it, fix it up, start the signers and the file.
    fn begin_body(&mut self, section: &[u8], rest: &[u8]) {
        match self.prepare(section) {
            Ok(body) => {
                // From now on what is held is the fixed-up copy; should it be larger than the
                // buffer it came from and not fit, the buffer's share stays charged instead.
                let _ = self.held.resize(body.header_section.capacity() as u64);
                self.body = Some(body);
                if !rest.is_empty() {
                    self.write_body(rest);
                }
            }
            Err(refusal) => self.refuse(refusal),
        }
    }

    fn prepare(&mut self, section: &[u8]) -> Result<Body<'c>, Refusal> {
        let Checked { fields, from } = check_section(section, self.envelope.smtputf8)
            .map_err(|e| Refusal::header(e.to_string()))?;
        let identity = &self.envelope.identity;
        if !identity.may_send_as(&from) {
            return Err(Refusal::new(
                RejectReason::SenderNotAllowed,
                550,
                "5.7.1",
                format!("From <{}> not allowed for {}", shown(&from), identity.name),
            ));
        }
        let from_domain =
            domain_of(&from).ok_or_else(|| Refusal::header("From address has no domain"))?;
        let signers = self
            .core
            .signers
            .for_from_domain(&from_domain)
            .ok_or_else(|| {
                Refusal::new(
                    RejectReason::NoSigningKey,
                    550,
                    "5.7.1",
                    format!("No DKIM key for {from_domain}: refusing to send it unsigned"),
                )
            })?;

        let ctx = Context {
            hostname: &self.core.settings.hostname,
            queue_id: self.id.as_str(),
            now_unix: self.now_unix,
        };
        let header_section = fixups::fix_header_section(&fields, &ctx);
        let single =
            (self.envelope.recipients.len() == 1).then(|| self.envelope.recipients[0].as_str());
        let trace = Trace {
            helo: &self.arrival.helo,
            client_ip: self.arrival.client_ip,
            protocol: self.arrival.protocol,
            single_recipient: single,
        };
        let received = fixups::received(&trace, &ctx);

        let mut draft = self
            .shared
            .spool
            .draft(self.id.clone())
            .map_err(|e| Refusal::spool(&e))?;
        for part in [&received[..], &header_section, b"\r\n"] {
            draft.write(part).map_err(|e| Refusal::spool(&e))?;
        }
        let envelope = &self.envelope;
        let needs_smtputf8 = envelope.smtputf8
            && (!envelope.sender.is_ascii()
                || envelope.recipients.iter().any(|r| !r.is_ascii())
                || !from.is_ascii());
        Ok(Body {
            draft,
            header_eight_bit: scan::has_eight_bit(&header_section),
            received,
            header_section,
            signing: MessageSigning::new(signers),
            signers,
            signing_domain: signers
                .first()
                .map(|s| s.domain.clone())
                .unwrap_or_default(),
            scan: BodyScan::new(),
            needs_smtputf8,
            eight_bit: false,
            longest_line: 0,
        })
    }

    /// The end of data: sign, verify, spool, and the reply for the client.
    pub async fn finish(mut self, saw_bare_newline: bool) -> Reply {
        if self.body.is_none() && self.refusal.is_none() {
            // No blank line: the whole message is a header section with an empty body.
            let mut section = std::mem::take(&mut self.header_buf);
            if !section.is_empty() && !section.ends_with(b"\r\n") {
                section.extend_from_slice(b"\r\n");
            }
            self.begin_body(&section, b"");
        }
        if saw_bare_newline && self.core.settings.limits.bare_newlines == BareNewlines::Reject {
            self.refuse(Refusal::new(
                RejectReason::BareNewline,
                554,
                "5.6.0",
                "Message contains a bare CR or LF (RFC 5321 2.3.8)",
            ));
        }
        if let Some(refusal) = self.refusal.take() {
            return refusal.reply;
        }
        let Some(body) = self.body.take() else {
            return Reply::new(451, "4.3.0", "Internal error: no message body");
        };
        match self.seal(body).await {
            Ok(reply) => reply,
            Err(refusal) => {
                self.rejected(&refusal);
                refusal.reply
            }
        }
    }

    async fn seal(&mut self, body: Body<'c>) -> Result<Reply, Refusal> {
        let (mut body, reasons) = self.fit_for_smtp(body).await?;
        let t = Instant::now();
        let made = body
            .signing
            .finish(&body.header_section, self.now_unix.max(0) as u64)
            .map_err(|e| match e {
                SignError::SelfVerify(e) => self.self_verify_failed(&body.signing_domain, &e),
                e => {
                    tracing::error!(queue_id = %self.id, error = %e, "signing failed");
                    Refusal::new(
                        RejectReason::Signing,
                        451,
                        "4.3.0",
                        "Signing failed, try again later",
                    )
                }
            })?;
        self.signing_time += t.elapsed();
        self.verify_independently(&mut body.draft, body.signers, &body.signing_domain, &made)
            .await?;
        let signatures: Vec<_> = made
            .into_iter()
            .map(|m| (m.domain, m.algorithm, m.header))
            .collect();

        let envelope = Envelope {
            signatures: signatures.iter().map(|(_, _, h)| h.clone()).collect(),
            size: body.draft.size,
            // From the bytes that will be sent, whatever the client declared.
            eight_bit: body.eight_bit,
            smtputf8: body.needs_smtputf8,
            ..Envelope::new(
                self.envelope.sender.clone(),
                self.envelope.recipients.iter().cloned(),
                self.now_unix,
                self.envelope.identity.name.clone(),
            )
        };
        let spool = self.shared.spool.clone();
        let draft = body.draft;
        let committed = tokio::task::spawn_blocking(move || {
            spool
                .commit_keeping(draft, &envelope)
                .map(|bytes| (bytes, envelope))
        })
        .await;
        // The delivery side gets what was just made durable without reading it back.
        let handed = match committed {
            Ok(Ok((bytes, envelope))) => Committed {
                id: self.id.clone(),
                in_hand: Some(InHand { envelope, bytes }),
            },
            Ok(Err(e)) => {
                tracing::error!(queue_id = %self.id, error = %e, "spool commit failed");
                return Err(Refusal::spool(&e));
            }
            Err(_) => return Err(Refusal::local_error("Internal error while queueing")),
        };
        let m = &self.shared.metrics;
        m.messages_received_total.inc();
        m.message_size_bytes.observe(self.size as f64);
        m.signing_seconds.observe(self.signing_time.as_secs_f64());
        for (domain, algorithm, _) in &signatures {
            m.signed(domain, metric_algorithm(*algorithm));
        }
        if reasons.long_lines {
            m.reencoded(ReencodeReason::LongLines);
        }
        if reasons.eight_bit {
            m.reencoded(ReencodeReason::EightBit);
        }
        let algorithms: Vec<&str> = signatures.iter().map(|(_, a, _)| a.tag()).collect();
        tracing::info!(
            queue_id = %self.id,
            client = %self.envelope.identity.name,
            sender = %self.envelope.sender,
            recipients = self.envelope.recipients.len(),
            size = self.size,
            domain = %body.signing_domain,
            algorithms = %algorithms.join(","),
            signing_us = self.signing_time.as_micros() as u64,
            reencoded = %super::reencode::shown(reasons),
            longest_line = body.longest_line,
            "accepted and signed"
        );
        let _ = self.shared.queued.send(handed);
        Ok(Reply::new(
            250,
            "2.0.0",
            format!("OK queued as {}", self.id),
        ))
    }
}

impl<'c> Reception<'c> {
    /// Up to `dkim.independent_verify_max`: each new signature verified by mail-auth's own
    /// verifier over the signature fields and the draft as they will be sent.
    async fn verify_independently(
        &mut self,
        draft: &mut Draft,
        signers: &[Arc<SelectorSigner>],
        signing_domain: &str,
        made: &[crate::dkim::message::MadeField],
    ) -> Result<(), Refusal> {
        let sig_len: usize = made.iter().map(|m| m.header.len()).sum();
        let total = draft.size + sig_len as u64;
        if total > self.core.settings.dkim.independent_verify_max {
            return Ok(());
        }
        let t = Instant::now();
        let mut message = Vec::with_capacity(total as usize);
        for m in made {
            message.extend_from_slice(m.header.as_bytes());
        }
        let read = draft.read_from(0, |piece| {
            message.extend_from_slice(piece);
            true
        });
        if let Err(e) = read {
            tracing::error!(queue_id = %self.id, error = %e, "cannot read the draft back");
            return Err(Refusal::spool(&e));
        }
        let keys = KnownKeys::new(signers);
        let checked = independent::verify(&self.core.resolver, &keys, &message, made).await;
        self.signing_time += t.elapsed();
        checked.map_err(|e| self.self_verify_failed(signing_domain, &e))
    }

    /// A signature the relay made does not verify (our own check or mail-auth's): refused,
    /// logged and counted, whichever check found it.
    fn self_verify_failed(&self, domain: &str, error: &dyn std::fmt::Display) -> Refusal {
        tracing::error!(queue_id = %self.id, domain = %domain, error = %error, "self-verification failed; message refused");
        self.shared.metrics.self_verify_failures_total.inc();
        Refusal::self_verify()
    }
}

fn metric_algorithm(a: crate::dkim::keys::KeyAlgorithm) -> Algorithm {
    match a {
        crate::dkim::keys::KeyAlgorithm::RsaSha256 => Algorithm::RsaSha256,
        crate::dkim::keys::KeyAlgorithm::Ed25519Sha256 => Algorithm::Ed25519Sha256,
    }
}

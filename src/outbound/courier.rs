//! The SMTP courier: hands one message to a destination over an idle pooled connection (after
//! RSET, in the envelope's write where the server pipelines) or a new one — next hops in order, each address of each host (IPv6 and IPv4), skipping
//! addresses the circuit breaker holds closed — with MAIL/RCPT giving an outcome per recipient
//! and the DATA phase written by us (signatures first, dot-stuffed; a small message in one write
//! with its terminator) from the spool file, so a large message is never in memory, or from
//! memory when the reception handed a small one over. A connection whose transaction ended cleanly goes back to
//! the pool. When every address was skipped, nothing was attempted: the outcome is `Held`.
//!
//! Under a transport security policy ([`Security`]) an MX host the enforced MTA-STS policy
//! does not list is never tried, nor one whose TLSA records cannot be looked up; each
//! connection must meet what the policy of its host demands (DANE first: `host`, and
//! `connection::Secure`), and every session's result goes to the TLS-RPT recorder.

mod policy;

use super::breaker::{Admit, Breaker};
use super::connection::{self, Connection, OpenError, Policy};
use super::extensions::{mail_parameters, MailParameters};
use super::host::{self, Governed};
use super::next_hop::{Hop, HopError};
use super::pool::Pool;
use super::{Message, Outcome, Parcel};
use crate::smtp::data::dot_stuff;
use crate::tls_policy::{DomainPolicy, Recorder};
use crate::trust::Trust;
use mail_auth::MessageAuthenticator;
use smtp_proto::{Response, EXT_8BIT_MIME, EXT_PIPELINING, EXT_SMTP_UTF8};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a delivery needs besides the message.
pub struct Courier<'a> {
    pub resolver: &'a MessageAuthenticator,
    pub pool: &'a Pool,
    pub breaker: &'a Breaker,
    pub policy: &'a Policy,
    /// Counts TLS that was required or tried and did not happen.
    pub tls_failures: Option<prometheus::IntCounter>,
    /// Counts 8-bit messages sent to a server that did not offer 8BITMIME.
    pub unannounced_8bit: Option<prometheus::IntCounter>,
    /// MX delivery: the recipient domain's transport security. `None`: relay host, routes.
    pub security: Option<Security<'a>>,
}

/// The transport security of one MX delivery: the recipient domain's policies, whom to trust
/// for the certificates they demand, and where each session's result goes.
pub struct Security<'a> {
    pub domain: &'a DomainPolicy,
    /// `None` only when no policy can apply (MTA-STS off, no TLS reports).
    pub trust: Option<&'a Trust>,
    pub recorder: &'a Recorder,
    /// `delivery.dane` with `dns.dnssec: trust-ad`: hosts' TLSA records are looked up.
    pub dane: Option<host::Dane<'a>>,
}

/// A transaction that got its answers.
struct Done {
    outcomes: Vec<Outcome>,
    /// The connection is in a clean state and the server did not say it is closing.
    reusable: bool,
}

impl Courier<'_> {
    /// Deliver `parcel` to `destination` (the pool's key: a recipient domain, or the relay
    /// host), reached through `hops` in order.
    pub async fn deliver(
        &self,
        destination: &str,
        hops: &[Hop],
        parcel: &Parcel<'_>,
    ) -> Vec<Outcome> {
        let mut lease = self.pool.lease(destination).await;
        if let Some(mut conn) = lease.take_idle() {
            let met = (conn.host.clone(), conn.addr.port(), conn.tls, conn.verified);
            if !self.may_reuse(met, parcel).await {
                // Opened before the policy now in force: it may not have met it.
                conn.quit().await;
            } else if pipelined_reset(&conn) || conn.reset().await {
                match transaction(
                    &mut conn,
                    self.policy,
                    parcel,
                    self.unannounced_8bit.as_ref(),
                    Reset::IfPipelining,
                )
                .await
                {
                    Ok(done) => {
                        tracing::debug!(queue_id = parcel.queue_id, host = %conn.host, addr = %conn.addr, transactions = conn.transactions, "transaction over a reused connection");
                        if done.reusable {
                            self.pool.give_back(lease, conn);
                        } else {
                            conn.quit().await;
                        }
                        return done.outcomes;
                    }
                    Err(e) => {
                        tracing::debug!(queue_id = parcel.queue_id, host = %conn.host, error = %e, "reused connection failed; opening a new one");
                    }
                }
            }
            // Closed at the far end while idle, or broken: a new connection follows.
        }

        let mut last = String::from("no next hop");
        let mut permanent = true;
        // Addresses skipped because they are closed; whether any other was really tried.
        let mut held: Vec<String> = Vec::new();
        let mut tried = false;
        'hops: for hop in hops {
            let found = host::lookup(
                self.resolver,
                self.security.as_ref(),
                hop,
                parcel.tls_optional,
            )
            .await;
            let (addrs, host_policy) = match found {
                Ok((addrs, Governed::By(policy))) => (addrs, policy),
                Ok((_, Governed::Unknown { policy, error })) => {
                    // Its TLSA records may say anything: never this host until they can be
                    // had; the other hosts may be tried.
                    permanent = false;
                    tried = true;
                    last = self.tlsa_unknown(&hop.host, &policy, &error, parcel);
                    continue 'hops;
                }
                Err(HopError::Permanent(e)) => {
                    last = e;
                    continue;
                }
                Err(HopError::Temporary(e)) => {
                    permanent = false;
                    tried = true;
                    last = e;
                    continue;
                }
            };
            if let Some(text) = self.refused(&hop.host, &host_policy, parcel) {
                // Never this host, however the others fare; the mail waits for a host the
                // policy allows (or a new policy), never goes elsewhere.
                permanent = false;
                last = text;
                continue 'hops;
            }
            let dane_name = policy::dane_name(&host_policy);
            for addr in addrs {
                let at = format!("{} [{}]", hop.host, addr.ip());
                let key = addr.to_string();
                permanent = false;
                let probe = match self.breaker.admit(&key) {
                    Admit::Go => false,
                    Admit::Probe => true,
                    Admit::Held => {
                        held.push(key);
                        continue;
                    }
                };
                tried = true;
                let secure = self.secure(&host_policy, &dane_name);
                let opened = match (&host_policy, secure) {
                    // An enforced policy without trust roots to check it: never unchecked.
                    (Some(hp), None) if hp.enforced() => {
                        last = format!("{at}: 4.7.5 no CA certificates to check the certificate the policy demands (delivery.ca_file)");
                        continue 'hops;
                    }
                    _ => connection::open(addr, &hop.host, self.policy, secure).await,
                };
                // Logged there when it is a policy failure; the lines below say it otherwise.
                let logged = self.record(parcel, &hop.host, addr, &host_policy, &opened);
                let mut conn = match opened {
                    Ok(c) => {
                        self.breaker.succeeded(&key, probe);
                        c
                    }
                    Err(e @ OpenError::Down { .. }) => {
                        if !logged {
                            tracing::info!(queue_id = parcel.queue_id, host = %hop.host, %addr, error = %e, "next hop unreachable");
                        }
                        if e.is_tls() {
                            self.count_tls_failure();
                        }
                        self.breaker.failed(&key, &hop.host, &e.to_string(), probe);
                        last = format!("{at}: {e}");
                        continue;
                    }
                    Err(e @ OpenError::Policy { .. }) => {
                        // The host answered: it is up. Every address of it would say the
                        // same: next host.
                        self.breaker.succeeded(&key, probe);
                        if !logged {
                            tracing::info!(queue_id = parcel.queue_id, host = %hop.host, %addr, error = %e, "next hop refused by policy");
                        }
                        if e.is_tls() {
                            self.count_tls_failure();
                        }
                        last = format!("{at}: {e}");
                        continue 'hops;
                    }
                };
                match transaction(
                    &mut conn,
                    self.policy,
                    parcel,
                    self.unannounced_8bit.as_ref(),
                    Reset::No,
                )
                .await
                {
                    Ok(done) => {
                        if done.reusable {
                            self.pool.give_back(lease, conn);
                        } else {
                            conn.quit().await;
                        }
                        return done.outcomes;
                    }
                    Err(e) => {
                        tracing::info!(queue_id = parcel.queue_id, host = %hop.host, %addr, error = %e, "delivery broke off");
                        last = format!("{at}: {e}");
                    }
                }
            }
        }
        if !tried && !held.is_empty() {
            self.breaker.held(destination, &held);
            parcel.all(Outcome::Held(held))
        } else if permanent {
            parcel.all(Outcome::Permanent(last))
        } else {
            parcel.all(Outcome::Temporary(last))
        }
    }

    fn count_tls_failure(&self) {
        if let Some(c) = &self.tls_failures {
            c.inc();
        }
    }
}

/// Why a transaction broke off before every recipient had its answer: the connection failed,
/// timed out or answered short. Never a verdict on the recipients: always temporary, they are
/// tried again (over a new connection, another host, or at the next retry).
#[derive(Debug, thiserror::Error)]
enum BrokeOff {
    #[error("timed out waiting for the envelope replies")]
    EnvelopeTimedOut,
    #[error("MAIL/RCPT/DATA: {0}")]
    Envelope(mail_send::Error),
    #[error("too few replies to the pipelined envelope")]
    TooFewReplies,
    /// A reused connection did not take the RSET sent ahead of the envelope.
    #[error("RSET refused: {0}")]
    ResetRefused(String),
    /// One command of an envelope sent without pipelining: `MAIL`, `RCPT` or `DATA`.
    #[error("{0}: {1}")]
    Command(&'static str, mail_send::Error),
    #[error("after an empty DATA: {0}")]
    EmptyData(mail_send::Error),
    #[error("timed out sending the message")]
    SendTimedOut,
    #[error("sending the message: {0}")]
    Send(std::io::Error),
    #[error("no reply after the message")]
    NoFinalReply,
    #[error("after the message: {0}")]
    FinalReply(mail_send::Error),
}

type HopResult<T> = Result<T, BrokeOff>;

/// Whether a transaction on a reused connection starts with RSET in the envelope's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reset {
    No,
    /// The connection was reused without its own RSET round trip (`pipelined_reset`): the
    /// envelope, pipelined, starts with one.
    IfPipelining,
}

/// A reused connection to a pipelining server gets its RSET in the same write as the next
/// envelope (RFC 2920 allows RSET in a group) instead of a round trip of its own; a refused
/// RSET or a connection closed while idle ends that transaction before any message data,
/// and the delivery goes over a new connection as it would after a failed RSET.
fn pipelined_reset(conn: &Connection) -> bool {
    conn.caps.has_capability(EXT_PIPELINING)
}

/// MAIL, RCPT for each recipient, DATA: an outcome per recipient. `Err` when the connection
/// broke before the answers were in.
async fn transaction(
    conn: &mut Connection,
    policy: &Policy,
    parcel: &Parcel<'_>,
    unannounced_8bit: Option<&prometheus::IntCounter>,
    reset: Reset,
) -> HopResult<Done> {
    conn.transactions += 1;
    let (params, unannounced) = match mail_parameters(
        parcel.eight_bit,
        parcel.smtputf8,
        conn.caps.has_capability(EXT_8BIT_MIME),
        conn.caps.has_capability(EXT_SMTP_UTF8),
        &conn.host,
    ) {
        MailParameters::Send {
            params,
            unannounced_8bit,
        } => (params, unannounced_8bit),
        MailParameters::Refused(why) => {
            tracing::info!(queue_id = parcel.queue_id, host = %conn.host, "not sent: the message needs SMTPUTF8");
            return Ok(Done {
                outcomes: parcel.all(Outcome::Permanent(why)),
                reusable: true,
            });
        }
    };
    let mail = format!("MAIL FROM:<{}>{params}\r\n", parcel.sender);
    let rcpts: Vec<String> = parcel
        .recipients
        .iter()
        .map(|r| format!("RCPT TO:<{r}>\r\n"))
        .collect();
    let envelope = if conn.caps.has_capability(EXT_PIPELINING) {
        pipelined(conn, &mail, &rcpts, reset == Reset::IfPipelining).await?
    } else {
        one_by_one(conn, &mail, &rcpts).await?
    };
    let outcomes = match envelope {
        Envelope::Finished(done) => return Ok(done),
        Envelope::DataGo(outcomes) => outcomes,
    };
    let client = &mut conn.client;
    if outcomes.iter().all(Option::is_some) {
        // Only a pipelining server that accepted DATA with no recipient gets here (RFC 2920
        // says it must refuse): end the empty message and let it answer.
        client.cmd(b".\r\n").await.map_err(BrokeOff::EmptyData)?;
        return Ok(Done {
            outcomes: outcomes.into_iter().flatten().collect(),
            reusable: true,
        });
    }
    if unannounced {
        tracing::info!(queue_id = parcel.queue_id, host = %conn.host, "8-bit message sent to a server without 8BITMIME");
        if let Some(c) = unannounced_8bit {
            c.inc();
        }
    }
    tokio::time::timeout(
        policy.command_timeout.max(Duration::from_secs(60)) * 4,
        send_message(&mut client.stream, parcel),
    )
    .await
    .map_err(|_| BrokeOff::SendTimedOut)?
    .map_err(BrokeOff::Send)?;
    // RFC 5321 4.5.3.2.6: up to 10 minutes for the answer to the final dot.
    let reply = tokio::time::timeout(
        policy.command_timeout.max(Duration::from_secs(600)),
        client.read(),
    )
    .await
    .map_err(|_| BrokeOff::NoFinalReply)?
    .map_err(BrokeOff::FinalReply)?;
    let o = if reply.code < 300 {
        Outcome::Delivered(connection::show(&reply))
    } else {
        outcome_of(&reply)
    };
    Ok(Done {
        outcomes: fill(outcomes, &o),
        reusable: reply.code != 421,
    })
}

/// Where the envelope commands left the transaction.
enum Envelope {
    /// Over without a message: every recipient has its outcome.
    Finished(Done),
    /// The server said 354: send the message. `None`: accepted, its outcome is the final reply.
    DataGo(Vec<Option<Outcome>>),
}

/// Every recipient without an outcome gets `o`.
fn fill(outcomes: Vec<Option<Outcome>>, o: &Outcome) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|x| x.unwrap_or_else(|| o.clone()))
        .collect()
}

/// RFC 2920: MAIL, every RCPT and DATA in one write (after RSET when `reset`), then their
/// replies in order. A round trip per command is what a transaction costs otherwise, on both
/// ends.
async fn pipelined(
    conn: &mut Connection,
    mail: &str,
    rcpts: &[String],
    reset: bool,
) -> HopResult<Envelope> {
    let client = &mut conn.client;
    let mut batch = Vec::with_capacity(mail.len() + rcpts.len() * 40 + 12);
    if reset {
        batch.extend_from_slice(b"RSET\r\n");
    }
    batch.extend_from_slice(mail.as_bytes());
    for r in rcpts {
        batch.extend_from_slice(r.as_bytes());
    }
    batch.extend_from_slice(b"DATA\r\n");
    let wanted = rcpts.len() + 2 + usize::from(reset);
    let replies = tokio::time::timeout(client.timeout, async {
        client.stream.write_all(&batch).await?;
        client.stream.flush().await?;
        client.read_many(wanted).await
    })
    .await
    .map_err(|_| BrokeOff::EnvelopeTimedOut)?
    .map_err(BrokeOff::Envelope)?;
    let replies = match replies.split_first() {
        Some((rset, rest)) if reset => {
            if rset.code != 250 {
                // Whatever the server made of the rest, this connection is done with: if it
                // said 354, closing it abandons the empty message.
                return Err(BrokeOff::ResetRefused(connection::show(rset)));
            }
            rest
        }
        _ => replies.as_slice(),
    };
    let [mail_reply, rcpt_replies @ .., data_reply] = replies else {
        return Err(BrokeOff::TooFewReplies);
    };
    let closing = replies.iter().any(|r| r.code == 421);
    let mut outcomes: Vec<Option<Outcome>> = if mail_reply.code >= 400 {
        vec![Some(outcome_of(mail_reply)); rcpts.len()]
    } else {
        rcpt_replies
            .iter()
            .map(|r| (r.code >= 400).then(|| outcome_of(r)))
            .collect()
    };
    if data_reply.code == 354 {
        if mail_reply.code >= 400 {
            // A server that took DATA after refusing MAIL: end the empty message.
            client.cmd(b".\r\n").await.map_err(BrokeOff::EmptyData)?;
        } else {
            return Ok(Envelope::DataGo(outcomes));
        }
    }
    if outcomes.iter().any(Option::is_none) {
        // Recipients were accepted but DATA was refused: its reply is theirs.
        let o = outcome_of(data_reply);
        outcomes = fill(outcomes, &o).into_iter().map(Some).collect();
    }
    Ok(Envelope::Finished(Done {
        outcomes: outcomes.into_iter().flatten().collect(),
        reusable: !closing,
    }))
}

/// MAIL, each RCPT, DATA, each waiting for its reply: for servers without PIPELINING.
async fn one_by_one(conn: &mut Connection, mail: &str, rcpts: &[String]) -> HopResult<Envelope> {
    let client = &mut conn.client;
    let reply = client
        .cmd(mail.as_bytes())
        .await
        .map_err(|e| BrokeOff::Command("MAIL", e))?;
    if reply.code >= 400 {
        return Ok(Envelope::Finished(Done {
            outcomes: vec![outcome_of(&reply); rcpts.len()],
            reusable: reply.code != 421,
        }));
    }
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(rcpts.len());
    for rcpt in rcpts {
        let reply = client
            .cmd(rcpt.as_bytes())
            .await
            .map_err(|e| BrokeOff::Command("RCPT", e))?;
        if reply.code == 421 {
            // The server is closing: what was not answered yet is for later.
            let o = outcome_of(&reply);
            outcomes.resize(rcpts.len(), Some(o.clone()));
            return Ok(Envelope::Finished(Done {
                outcomes: fill(outcomes, &o),
                reusable: false,
            }));
        }
        outcomes.push((reply.code >= 400).then(|| outcome_of(&reply)));
    }
    if outcomes.iter().all(Option::is_some) {
        // Nobody to send to; the next transaction starts with RSET.
        return Ok(Envelope::Finished(Done {
            outcomes: outcomes.into_iter().flatten().collect(),
            reusable: true,
        }));
    }
    let reply = client
        .cmd(b"DATA\r\n")
        .await
        .map_err(|e| BrokeOff::Command("DATA", e))?;
    if reply.code != 354 {
        return Ok(Envelope::Finished(Done {
            outcomes: fill(outcomes, &outcome_of(&reply)),
            reusable: reply.code != 421,
        }));
    }
    Ok(Envelope::DataGo(outcomes))
}

/// Signatures, then the stored bytes dot-stuffed, then the terminator.
async fn send_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parcel: &Parcel<'_>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(70 * 1024);
    for sig in parcel.signatures {
        out.extend_from_slice(sig.as_bytes());
    }
    let mut at_line_start = true;
    let mut last_two = [b'\r', b'\n'];
    let mut stuff = |piece: &[u8], out: &mut Vec<u8>| {
        dot_stuff(piece, &mut at_line_start, out);
        match piece {
            [.., a, b] => last_two = [*a, *b],
            [b] => last_two = [last_two[1], *b],
            [] => {}
        }
    };
    // Written in pieces of 64 KiB or more: a small message goes in one write with its
    // signatures and the terminator.
    match parcel.message {
        Message::InMemory(bytes) => {
            for piece in bytes.chunks(64 * 1024) {
                stuff(piece, &mut out);
                if out.len() >= 64 * 1024 {
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
        }
        Message::File { path, len } => {
            let mut file = tokio::fs::File::open(path).await?.take(len);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                stuff(&chunk[..n], &mut out);
                if out.len() >= 64 * 1024 {
                    stream.write_all(&out).await?;
                    out.clear();
                }
            }
        }
    }
    if last_two != [b'\r', b'\n'] {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    stream.write_all(&out).await?;
    stream.flush().await
}

fn outcome_of(reply: &Response<String>) -> Outcome {
    let shown = connection::show(reply);
    match reply.code {
        200..=399 => Outcome::Delivered(shown),
        500..=599 => Outcome::Permanent(shown),
        _ => Outcome::Temporary(shown),
    }
}

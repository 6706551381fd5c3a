//! Telling the sender: one DSN (RFC 3464) per message and attempt for the recipients that
//! failed for good, and one delayed-delivery warning per message after
//! `delivery.delay_warning` — from `<>` to the envelope sender (never to `<>`, never about a
//! DSN), DKIM-signed when the relay has a key for its hostname's domain, queued like any
//! message.

use super::{dsn, Scheduler};
use crate::core::Core;
use crate::dkim::message::{sign_message, SignError};
use crate::spool::{Envelope, QueueId, RecipientState, SpoolError, StoredMessage};

/// Why a DSN could not be queued (the attempt that owes it is tried again later).
#[derive(Debug, thiserror::Error)]
pub(super) enum DsnError {
    /// Signing or its self-verification failed: nothing leaves that would not verify.
    #[error("cannot sign the DSN: {0}")]
    Sign(#[from] SignError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl Scheduler {
    /// Queue one DSN for the recipients that failed for good since the last one, and mark
    /// them; returns the DSN's queue id (for the scheduler to pick up).
    pub(super) async fn bounce(
        &self,
        core: &Core,
        id: &QueueId,
        env: &mut Envelope,
        message: &StoredMessage,
    ) -> Option<QueueId> {
        let failed: Vec<usize> = (0..env.recipients.len())
            .filter(|&i| env.recipients[i].state.is_failure() && !env.recipients[i].dsn_sent)
            .collect();
        if failed.is_empty() {
            return None;
        }
        let mut queued = None;
        // Never to <>, and never a DSN about a DSN.
        if !env.sender.is_empty() && !env.is_dsn {
            let failures: Vec<dsn::Failure<'_>> = failed
                .iter()
                .map(|&i| {
                    let r = &env.recipients[i];
                    dsn::Failure {
                        recipient: &r.address,
                        reply: r.last_reply.as_deref().unwrap_or("failed"),
                        expired_after: (r.state == RecipientState::Expired).then_some(r.attempts),
                    }
                })
                .collect();
            let about = dsn::About {
                hostname: &core.settings.hostname,
                queue_id: id.as_str(),
                sender: &env.sender,
                arrived: env.received_at,
                original: message,
            };
            let bytes = dsn::build(&about, dsn::Kind::Failed, &failures, self.clock.now());
            match self.enqueue_dsn(core, &env.sender, bytes).await {
                Ok(dsn_id) => {
                    tracing::info!(queue_id = %id, dsn_id = %dsn_id, recipients = failed.len(), "bounce queued for the sender");
                    queued = Some(dsn_id);
                }
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "cannot queue DSN; will retry");
                    return None;
                }
            }
        }
        for i in failed {
            env.recipients[i].dsn_sent = true;
        }
        queued
    }

    /// Once a message has waited `delivery.delay_warning` with recipients still being
    /// retried, tell the sender once (`Action: delayed`); returns the warning's queue id.
    pub(super) async fn warn_delayed(
        &self,
        core: &Core,
        id: &QueueId,
        env: &mut Envelope,
        message: &StoredMessage,
    ) -> Option<QueueId> {
        let d = &core.settings.delivery;
        let waited = self.clock.now() - env.received_at;
        if d.delay_warning.is_zero()
            || env.delay_warned
            || env.sender.is_empty()
            || env.is_dsn
            || waited < d.delay_warning.as_secs() as i64
        {
            return None;
        }
        let delayed: Vec<dsn::Failure<'_>> = env
            .pending()
            .filter(|r| r.attempts > 0)
            .map(|r| dsn::Failure {
                recipient: &r.address,
                reply: r.last_reply.as_deref().unwrap_or("not delivered yet"),
                expired_after: None,
            })
            .collect();
        if delayed.is_empty() {
            return None;
        }
        let count = delayed.len();
        let about = dsn::About {
            hostname: &core.settings.hostname,
            queue_id: id.as_str(),
            sender: &env.sender,
            arrived: env.received_at,
            original: message,
        };
        let retry_until = env.received_at + d.max_age.as_secs() as i64;
        let bytes = dsn::build(
            &about,
            dsn::Kind::Delayed { retry_until },
            &delayed,
            self.clock.now(),
        );
        drop(delayed);
        match self.enqueue_dsn(core, &env.sender.clone(), bytes).await {
            Ok(dsn_id) => {
                tracing::info!(queue_id = %id, dsn_id = %dsn_id, recipients = count, "delay warning queued for the sender");
                env.delay_warned = true;
                Some(dsn_id)
            }
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot queue delay warning; will try again");
                None
            }
        }
    }

    /// Sign (as the relay's hostname's domain, when it has keys) and queue a DSN to `to`.
    async fn enqueue_dsn(
        &self,
        core: &Core,
        to: &str,
        bytes: Vec<u8>,
    ) -> Result<QueueId, DsnError> {
        let id = QueueId::new();
        let now = self.clock.now();
        let signatures = match core.signers.for_from_domain(&core.settings.hostname) {
            Some(signers) => match sign_message(signers, &bytes, now.max(0) as u64) {
                Ok(made) => made.into_iter().map(|m| m.header).collect(),
                Err(e) => {
                    if let SignError::SelfVerify(_) = e {
                        self.metrics.self_verify_failures_total.inc();
                    }
                    return Err(e.into());
                }
            },
            None => Vec::new(),
        };
        let env = Envelope {
            signatures,
            size: bytes.len() as u64,
            is_dsn: true,
            ..Envelope::new(String::new(), [to.to_string()], now, "dsn".into())
        };
        let spool = self.spool.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || {
            let mut draft = spool.draft(id2)?;
            draft.write(&bytes)?;
            spool.commit(draft, &env)
        })
        .await
        .map_err(|e| SpoolError::Io {
            path: "dsn".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(id)
    }
}

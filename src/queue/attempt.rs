//! One delivery attempt of one message: its due recipients grouped by destination, each group
//! handed to the transport as a parcel (unless its destination is crowded: then it is parked),
//! the outcomes written into the envelope, DSNs queued, and the envelope saved — or the message
//! removed when nothing is left to do. A recipient held for a closed host was not attempted:
//! it is not charged, not logged, and its envelope entry is left as it was.

use super::{retry, Scheduler};
use crate::config::Delivery;
use crate::metrics::{DeliveryResult, Metrics};
use crate::outbound::{Message, Outcome, Parcel};
use crate::spool::{InHand, QueueId, RecipientState, RecipientStatus, SpoolError};
use std::collections::{BTreeMap, BTreeSet};

/// What an attempt leaves for the scheduler.
#[derive(Default)]
pub(super) struct Attempted {
    /// Nothing is left to do: the message is gone from the spool.
    pub done: bool,
    /// When recipients not waiting for a host are due again.
    pub next: Option<i64>,
    /// The closed hosts that its held recipients wait for.
    pub held_on: Vec<String>,
    /// DSNs it queued (a bounce, a delay warning).
    pub dsns: Vec<QueueId>,
    /// Recipients were left for later because this destination was crowded.
    pub parked_on: Option<String>,
    /// Destinations it delivered to (a connection slot there is free again).
    pub used: Vec<String>,
    /// Parked before it was delivered: what was handed over, for the next attempt (with the
    /// envelope as it is now).
    pub handed_back: Option<InHand>,
}

impl Scheduler {
    /// One delivery attempt for the due recipients of a message (`force`: every pending
    /// recipient, due or not). `in_hand`: its envelope (and bytes) as the reception committed
    /// them, instead of reading them from the spool.
    pub(super) async fn attempt(
        &self,
        id: &QueueId,
        force: bool,
        in_hand: Option<InHand>,
    ) -> Attempted {
        let core = self.live.load_full();
        let (loaded, in_memory) = match in_hand {
            // `queue delete` sends no signal: a message whose file is gone is done, even when
            // its envelope is in hand.
            Some(h) if self.spool.contains(id) => (Ok(h.envelope), h.bytes),
            Some(_) => (Err(SpoolError::NotFound), None),
            None => (self.spool.load(id), None),
        };
        let mut env = match loaded {
            Ok(e) => e,
            Err(SpoolError::NotFound) => {
                return Attempted {
                    done: true,
                    ..Attempted::default()
                }
            }
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot read envelope");
                return Attempted {
                    next: Some(self.clock.now() + 300),
                    ..Attempted::default()
                };
            }
        };
        let now = self.clock.now();
        let loaded = env.clone();
        let mut parked_on: Option<String> = None;
        let mut used: Vec<String> = Vec::new();
        let mut held_on: BTreeSet<String> = BTreeSet::new();
        let mut held = vec![false; env.recipients.len()];
        let message = self.spool.message(id, &env);
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in env.recipients.iter().enumerate() {
            if r.state == RecipientState::Pending && (force || r.next_attempt <= now) {
                let destination = self.transport.destination(&r.address);
                groups.entry(destination).or_default().push(i);
            }
        }
        for (destination, indexes) in groups {
            // The directory (an empty destination) has no connections to wait for.
            if !destination.is_empty() && self.transport.crowded(&destination) {
                // Enough deliveries already wait there; this one would only hold a slot.
                parked_on.get_or_insert(destination);
                continue;
            }
            let recipients: Vec<&str> = indexes
                .iter()
                .map(|&i| env.recipients[i].address.as_str())
                .collect();
            // BATV tags go on here, on the wire only: the spool keeps the envelope as submitted.
            let wire = crate::backscatter::WireEnvelope::new(
                core.tagging.as_ref(),
                &env.sender,
                &recipients,
                now,
            );
            let parcel = Parcel {
                queue_id: id.as_str(),
                sender: &wire.sender,
                recipients: wire.recipients(),
                signatures: &env.signatures,
                message: match &in_memory {
                    Some(bytes) => Message::InMemory(bytes),
                    None => Message::File {
                        path: &message.path,
                        len: message.len,
                    },
                },
                eight_bit: env.eight_bit,
                smtputf8: env.smtputf8,
                tls_optional: env.tls_optional,
            };
            let started = std::time::Instant::now();
            let outcomes = self.transport.deliver(&parcel).await;
            if !destination.is_empty() {
                used.push(destination);
            }
            if !outcomes.iter().all(|o| matches!(o, Outcome::Held(_))) {
                self.metrics
                    .delivery_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            let expired = now - env.received_at >= core.settings.delivery.max_age.as_secs() as i64;
            for (&i, outcome) in indexes.iter().zip(outcomes) {
                if let Outcome::Held(hosts) = outcome {
                    if expired {
                        // Its hosts stayed closed for all of max_age: give up all the same.
                        give_up_held(&mut env.recipients[i], &hosts, id, &self.metrics);
                        continue;
                    }
                    held[i] = true;
                    held_on.extend(hosts);
                    continue;
                }
                let r = &mut env.recipients[i];
                apply(
                    r,
                    outcome,
                    &core.settings.delivery,
                    env.received_at,
                    now,
                    id,
                    &self.metrics,
                );
            }
        }
        let mut dsns: Vec<QueueId> = Vec::new();
        dsns.extend(self.bounce(&core, id, &mut env, &message).await);
        dsns.extend(self.warn_delayed(&core, id, &mut env, &message).await);
        let spool = self.spool.clone();
        let id2 = id.clone();
        let done = env.is_done();
        let next = env
            .recipients
            .iter()
            .zip(&held)
            .filter(|(r, held)| r.state == RecipientState::Pending && !**held)
            .map(|(r, _)| r.next_attempt)
            .min();
        let unchanged = env == loaded;
        // Parked before its delivery: the next attempt need not read back what it has.
        let handed_back = (!done && parked_on.is_some()).then(|| InHand {
            envelope: env.clone(),
            bytes: in_memory,
        });
        // A held message also comes due when it expires, in case its hosts never open.
        let expires = env.received_at + core.settings.delivery.max_age.as_secs() as i64;
        let result = tokio::task::spawn_blocking(move || {
            if done {
                spool.remove(&id2)
            } else if unchanged {
                // Parked or held without an attempt: nothing to record.
                Ok(())
            } else {
                spool.update(&id2, &env)
            }
        })
        .await;
        match result {
            Ok(Ok(())) | Ok(Err(SpoolError::NotFound)) => {}
            Ok(Err(e)) => {
                tracing::error!(queue_id = %id, error = %e, "cannot record delivery outcome")
            }
            Err(_) => {}
        }
        let next = match (done, next, held_on.is_empty()) {
            (true, _, _) => None,
            (false, Some(t), true) => Some(t),
            (false, Some(t), false) => Some(t.min(expires)),
            (false, None, false) => Some(expires),
            // Nothing pending but a DSN still owed (it could not be queued): try again soon.
            (false, None, true) => Some(self.clock.now() + 60),
        };
        Attempted {
            done,
            next,
            held_on: held_on.into_iter().collect(),
            dsns,
            parked_on,
            used,
            handed_back,
        }
    }
}

/// A recipient whose hosts were closed until `delivery.max_age` ran out: expired without an
/// attempt now; its last real reply (if it ever had one) stays for the DSN.
fn give_up_held(r: &mut RecipientStatus, hosts: &[String], id: &QueueId, metrics: &Metrics) {
    r.state = RecipientState::Expired;
    if r.last_reply.is_none() {
        r.last_reply = Some(format!(
            "not delivered: next hop {} unreachable",
            hosts.join(", ")
        ));
    }
    metrics.deliveries(DeliveryResult::Bounced, 1);
    tracing::warn!(queue_id = %id, recipient = %r.address, "bounced: too old (its next hop stayed closed)");
}

/// Record one recipient's outcome of a real attempt.
fn apply(
    r: &mut RecipientStatus,
    outcome: Outcome,
    delivery: &Delivery,
    received_at: i64,
    now: i64,
    id: &QueueId,
    metrics: &Metrics,
) {
    if matches!(outcome, Outcome::Held(_)) {
        // Not attempted: not charged, and its last real reply stands.
        return;
    }
    r.attempts += 1;
    if let Some(reply) = outcome.reply() {
        r.last_reply = Some(reply.to_string());
    }
    match outcome {
        Outcome::Delivered(reply) => {
            r.state = RecipientState::Delivered;
            metrics.deliveries(DeliveryResult::Delivered, 1);
            tracing::info!(queue_id = %id, recipient = %r.address, reply = %reply, "delivered");
        }
        Outcome::Temporary(reply) => {
            let max_age = delivery.max_age.as_secs() as i64;
            if now - received_at >= max_age {
                r.state = RecipientState::Expired;
                metrics.deliveries(DeliveryResult::Bounced, 1);
                tracing::warn!(queue_id = %id, recipient = %r.address, reply = %reply, "bounced: too old");
            } else {
                let delay = retry::delay(&delivery.retry, r.attempts);
                r.next_attempt = now + delay.as_secs().max(1) as i64;
                metrics.deliveries(DeliveryResult::Deferred, 1);
                tracing::info!(queue_id = %id, recipient = %r.address, reply = %reply, retry_in = delay.as_secs(), "deferred");
            }
        }
        Outcome::Permanent(reply) => {
            r.state = RecipientState::Failed;
            metrics.deliveries(DeliveryResult::Bounced, 1);
            tracing::warn!(queue_id = %id, recipient = %r.address, reply = %reply, "bounced");
        }
        Outcome::Held(_) => {}
    }
}

//! The queue: which message is due when, delivery attempts bounded overall and per
//! destination domain, per-recipient outcomes written back to the spool, retries on the
//! schedule, and DSNs for what failed for good. The spool is the source of truth: at start the
//! schedule is rebuilt from it, and every decision is written to it before it counts.

pub mod dsn;
pub mod retry;

use crate::config::{DeliveryMode, OutboundTls};
use crate::core::Core;
use crate::outbound::courier::{self, Policy};
use crate::outbound::next_hop::{self, Hop, HopError};
use crate::outbound::{directory, Outcome, Parcel};
use crate::spool::{Envelope, QueueId, RecipientState, RecipientStatus, Spool, SpoolError};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The delivery side of the relay.
pub struct Scheduler {
    pub spool: Spool,
    pub live: Arc<ArcSwap<Core>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    domain_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    connections: Arc<Semaphore>,
}

impl Scheduler {
    pub fn new(
        spool: Spool,
        live: Arc<ArcSwap<Core>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Scheduler> {
        let max = live.load().settings.delivery.max_connections;
        Arc::new(Scheduler {
            spool,
            live,
            metrics,
            domain_slots: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(max)),
        })
    }

    /// Run until shutdown: `new` announces accepted messages, `retry_all` asks to try every
    /// queued message now (`queue retry`).
    pub async fn run(
        self: Arc<Self>,
        mut new: mpsc::UnboundedReceiver<QueueId>,
        mut retry_all: mpsc::UnboundedReceiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut due: BTreeSet<(i64, QueueId)> = BTreeSet::new();
        let mut in_flight: HashSet<QueueId> = HashSet::new();
        self.rescan(&mut due);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(QueueId, Option<i64>)>();
        let max_in_flight = self.live.load().settings.delivery.max_connections.max(1) * 2;
        loop {
            let now = unix_now();
            while in_flight.len() < max_in_flight {
                let Some(first) = due.first().cloned() else {
                    break;
                };
                if first.0 > now {
                    break;
                }
                due.remove(&first);
                if !in_flight.insert(first.1.clone()) {
                    continue;
                }
                let me = self.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let next = me.attempt(&first.1).await;
                    let _ = done.send((first.1, next));
                });
            }
            let wait = due.first().map_or(Duration::from_secs(3600), |(t, _)| {
                Duration::from_millis(((t - now).max(0) as u64) * 1000 + 5)
            });
            let can_start = in_flight.len() < max_in_flight;
            tokio::select! {
                Some(id) = new.recv() => {
                    if !in_flight.contains(&id) {
                        due.insert((unix_now(), id));
                    }
                }
                Some((id, next)) = done_rx.recv() => {
                    in_flight.remove(&id);
                    if let Some(t) = next {
                        due.insert((t, id));
                    }
                    self.update_gauges();
                }
                Some(()) = retry_all.recv() => {
                    due.clear();
                    self.rescan_now(&mut due);
                }
                _ = tokio::time::sleep(wait), if can_start => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    fn rescan(&self, due: &mut BTreeSet<(i64, QueueId)>) {
        for id in self.spool.list().unwrap_or_default() {
            match self.spool.load(&id) {
                Ok(env) => {
                    due.insert((env.next_due().unwrap_or(0), id));
                }
                Err(e) => tracing::error!(queue_id = %id, error = %e, "cannot read envelope"),
            }
        }
        self.update_gauges();
    }

    fn rescan_now(&self, due: &mut BTreeSet<(i64, QueueId)>) {
        for id in self.spool.list().unwrap_or_default() {
            due.insert((0, id));
        }
    }

    /// Set the queue gauges from the spool (the truth, across restarts and reloads).
    pub fn update_gauges(&self) {
        let ids = self.spool.list().unwrap_or_default();
        self.metrics.queue_messages.set(ids.len() as i64);
        let oldest = ids
            .first()
            .and_then(|id| self.spool.load(id).ok())
            .map_or(0, |e| (unix_now() - e.received_at).max(0));
        self.metrics.queue_oldest_age_seconds.set(oldest as f64);
    }

    fn domain_slot(&self, domain: &str, per_domain: usize) -> Arc<Semaphore> {
        let Ok(mut map) = self.domain_slots.lock() else {
            return Arc::new(Semaphore::new(per_domain));
        };
        map.entry(domain.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(per_domain)))
            .clone()
    }

    /// One delivery attempt for the due recipients of a message; returns when to come back.
    async fn attempt(&self, id: &QueueId) -> Option<i64> {
        let core = self.live.load_full();
        let mut env = match self.spool.load(id) {
            Ok(e) => e,
            Err(SpoolError::NotFound) => return None,
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot read envelope");
                return Some(unix_now() + 300);
            }
        };
        let now = unix_now();
        let message = self.spool.message_path(id);
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in env.recipients.iter().enumerate() {
            if r.state == RecipientState::Pending && r.next_attempt <= now {
                let domain = match &core.settings.delivery.mode {
                    DeliveryMode::Mx => {
                        crate::smtp::address::domain_of(&r.address).unwrap_or_default()
                    }
                    // One next hop for everything.
                    _ => String::new(),
                };
                groups.entry(domain).or_default().push(i);
            }
        }
        for (domain, indexes) in groups {
            let recipients: Vec<&str> = indexes
                .iter()
                .map(|&i| env.recipients[i].address.as_str())
                .collect();
            let parcel = Parcel {
                queue_id: id.as_str(),
                sender: &env.sender,
                recipients,
                signatures: &env.signatures,
                message: &message,
                eight_bit: env.eight_bit,
                smtputf8: env.smtputf8,
            };
            let started = std::time::Instant::now();
            let outcomes = self.deliver(&core, &domain, &parcel).await;
            self.metrics
                .delivery_seconds
                .observe(started.elapsed().as_secs_f64());
            for (&i, outcome) in indexes.iter().zip(outcomes) {
                apply(
                    &mut env.recipients[i],
                    outcome,
                    &core,
                    env.received_at,
                    now,
                    id,
                    &self.metrics,
                );
            }
        }
        self.bounce(&core, id, &mut env, &message).await;
        let spool = self.spool.clone();
        let id2 = id.clone();
        let done = env.is_done();
        let next = env.next_due();
        let result = tokio::task::spawn_blocking(move || {
            if done {
                spool.remove(&id2)
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
        if done {
            None
        } else {
            next
        }
    }

    async fn deliver(&self, core: &Core, domain: &str, parcel: &Parcel<'_>) -> Vec<Outcome> {
        let d = &core.settings.delivery;
        match &d.mode {
            DeliveryMode::Directory(dir) => directory::deliver(dir, parcel),
            DeliveryMode::RelayHost(r) => {
                let policy = Policy {
                    hostname: core.settings.hostname.clone(),
                    tls: r.tls,
                    verify_certificate: r.verify_certificate,
                    credentials: r.username.clone().zip(core.relay_password.clone()),
                    connect_timeout: d.connect_timeout,
                    command_timeout: d.command_timeout,
                };
                let _permit = self.connections.acquire().await;
                courier::deliver(
                    &core.resolver,
                    &[Hop {
                        host: r.host.clone(),
                        port: r.port,
                    }],
                    &policy,
                    parcel,
                )
                .await
            }
            DeliveryMode::Mx => {
                let hops = match next_hop::resolve(&core.resolver, &d.routes, domain, d.port).await
                {
                    Ok(h) => h,
                    Err(HopError::Permanent(e)) => return parcel.all(Outcome::Permanent(e)),
                    Err(HopError::Temporary(e)) => {
                        self.metrics.dns_failures_total.inc();
                        return parcel.all(Outcome::Temporary(e));
                    }
                };
                let policy = Policy {
                    hostname: core.settings.hostname.clone(),
                    tls: d.tls,
                    verify_certificate: false,
                    credentials: None,
                    connect_timeout: d.connect_timeout,
                    command_timeout: d.command_timeout,
                };
                let slot = self.domain_slot(domain, d.max_connections_per_domain);
                let _domain_permit = slot.acquire().await;
                let _permit = self.connections.acquire().await;
                let outcomes = courier::deliver(&core.resolver, &hops, &policy, parcel).await;
                if d.tls == OutboundTls::Required {
                    for o in &outcomes {
                        if let Outcome::Temporary(r) = o {
                            if r.contains("STARTTLS") {
                                self.metrics
                                    .tls_failures_total
                                    .with_label_values(&["outbound"])
                                    .inc();
                                break;
                            }
                        }
                    }
                }
                outcomes
            }
        }
    }

    /// Send one DSN for the recipients that failed for good since the last one.
    async fn bounce(
        &self,
        core: &Core,
        id: &QueueId,
        env: &mut Envelope,
        message: &std::path::Path,
    ) {
        let failed: Vec<usize> = (0..env.recipients.len())
            .filter(|&i| {
                env.recipients[i].state == RecipientState::Failed && !env.recipients[i].dsn_sent
            })
            .collect();
        if failed.is_empty() {
            return;
        }
        // Never to <>, and never a DSN about a DSN.
        if !env.sender.is_empty() && !env.is_dsn {
            let failures: Vec<dsn::Failure<'_>> = failed
                .iter()
                .map(|&i| dsn::Failure {
                    recipient: &env.recipients[i].address,
                    reply: env.recipients[i].last_reply.as_deref().unwrap_or("failed"),
                })
                .collect();
            let bytes = dsn::build(
                &core.settings.hostname,
                id.as_str(),
                &env.sender,
                &failures,
                message,
                unix_now(),
            );
            match self.enqueue_dsn(core, &env.sender, bytes).await {
                Ok(dsn_id) => {
                    tracing::info!(queue_id = %id, dsn_id = %dsn_id, recipients = failed.len(), "bounce sent to sender")
                }
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "cannot queue DSN; will retry");
                    return;
                }
            }
        }
        for i in failed {
            env.recipients[i].dsn_sent = true;
        }
    }

    async fn enqueue_dsn(
        &self,
        core: &Core,
        to: &str,
        bytes: Vec<u8>,
    ) -> Result<QueueId, SpoolError> {
        let id = QueueId::new();
        let mut signatures = Vec::new();
        if let Some(signers) = core.signers.for_from_domain(&core.settings.hostname) {
            use mail_auth::headers::HeaderWriter;
            for s in signers {
                if let Ok(sig) = s.signer.sign(&bytes) {
                    signatures.push(sig.to_header());
                }
            }
        }
        let now = unix_now();
        let env = Envelope {
            version: 1,
            sender: String::new(),
            recipients: vec![RecipientStatus {
                address: to.to_string(),
                state: RecipientState::Pending,
                attempts: 0,
                next_attempt: now,
                last_reply: None,
                dsn_sent: false,
            }],
            received_at: now,
            client: "dsn".into(),
            signatures,
            size: bytes.len() as u64,
            eight_bit: false,
            smtputf8: false,
            is_dsn: true,
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

/// Record one recipient's outcome.
fn apply(
    r: &mut RecipientStatus,
    outcome: Outcome,
    core: &Core,
    received_at: i64,
    now: i64,
    id: &QueueId,
    metrics: &crate::metrics::Metrics,
) {
    r.attempts += 1;
    r.last_reply = Some(outcome.reply().to_string());
    match outcome {
        Outcome::Delivered(reply) => {
            r.state = RecipientState::Delivered;
            metrics
                .deliveries_total
                .with_label_values(&["delivered"])
                .inc();
            tracing::info!(queue_id = %id, recipient = %r.address, reply = %reply, "delivered");
        }
        Outcome::Temporary(reply) => {
            let max_age = core.settings.delivery.max_age.as_secs() as i64;
            if now - received_at >= max_age {
                r.state = RecipientState::Failed;
                r.last_reply = Some(format!("gave up after {} attempts: {reply}", r.attempts));
                metrics
                    .deliveries_total
                    .with_label_values(&["bounced"])
                    .inc();
                tracing::warn!(queue_id = %id, recipient = %r.address, reply = %reply, "bounced: too old");
            } else {
                let delay = retry::delay(&core.settings.delivery.retry, r.attempts);
                r.next_attempt = now + delay.as_secs().max(1) as i64;
                metrics
                    .deliveries_total
                    .with_label_values(&["deferred"])
                    .inc();
                tracing::info!(queue_id = %id, recipient = %r.address, reply = %reply, retry_in = delay.as_secs(), "deferred");
            }
        }
        Outcome::Permanent(reply) => {
            r.state = RecipientState::Failed;
            metrics
                .deliveries_total
                .with_label_values(&["bounced"])
                .inc();
            tracing::warn!(queue_id = %id, recipient = %r.address, reply = %reply, "bounced");
        }
    }
}

//! The queue: which message is due when, delivery attempts bounded overall and per
//! destination (through the outbound connection pool), per-recipient outcomes written back to
//! the spool, retries on the schedule, and DSNs for what failed for good. The spool is the
//! source of truth: at start the schedule is rebuilt from it, and every decision is written to
//! it before it counts.

mod bounce;
pub mod dsn;
pub mod retry;

use crate::config::DeliveryMode;
use crate::core::Core;
use crate::outbound::connection::Policy;
use crate::outbound::courier::Courier;
use crate::outbound::health::HostHealth;
use crate::outbound::next_hop::{self, Hop, HopError};
use crate::outbound::pool::Pool;
use crate::outbound::{directory, Outcome, Parcel};
use crate::spool::{QueueId, RecipientState, RecipientStatus, Spool, SpoolError};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// After SIGTERM, how long deliveries under way may take to get their answers. Those still
/// running are then abandoned: their recipients stay pending in the spool and go out after
/// the restart (the receiver saw no final dot, or its answer was not recorded: at least once).
pub const DELIVERY_GRACE: Duration = Duration::from_secs(5);

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A message parked behind a crowded destination goes again when a delivery there ends, or
/// after this long at the latest.
const PARKED_AT_MOST: i64 = 15;

/// What an attempt leaves for the scheduler.
#[derive(Default)]
struct Attempted {
    /// When the message is due again (`None`: it is done, or gone).
    next: Option<i64>,
    /// DSNs it queued (a bounce, a delay warning).
    dsns: Vec<QueueId>,
    /// Recipients were left for later because this destination was crowded (`Pool::crowded`).
    parked_on: Option<String>,
    /// Destinations it delivered to (a connection slot there is free again).
    used: Vec<String>,
}

/// The delivery side of the relay.
pub struct Scheduler {
    pub spool: Spool,
    pub live: Arc<ArcSwap<Core>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pool: Arc<Pool>,
    health: HostHealth,
    /// The configuration the pool's limits come from; a reload is noticed by comparing.
    applied: Mutex<Arc<Core>>,
}

impl Scheduler {
    pub fn new(
        spool: Spool,
        live: Arc<ArcSwap<Core>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Scheduler> {
        let core = live.load_full();
        let d = &core.settings.delivery;
        let pool = Arc::new(Pool::new(d.max_connections, d.max_connections_per_domain));
        Arc::new(Scheduler {
            spool,
            live,
            metrics,
            pool,
            health: HostHealth::default(),
            applied: Mutex::new(core),
        })
    }

    /// Run until shutdown: `new` announces accepted messages, `retry_all` asks to try every
    /// queued message now (`queue retry`). Sleeps until the next message is due or something
    /// happens; never polls. On shutdown, deliveries under way get `DELIVERY_GRACE`.
    pub async fn run(
        self: Arc<Self>,
        mut new: mpsc::UnboundedReceiver<QueueId>,
        mut retry_all: mpsc::UnboundedReceiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut due: BTreeSet<(i64, QueueId)> = BTreeSet::new();
        let mut in_flight: HashSet<QueueId> = HashSet::new();
        // Every message in the queue, in arrival order (queue ids are time-ordered): the queue
        // gauges come from here, not from listing the spool at every event.
        let mut queued: BTreeSet<QueueId> = BTreeSet::new();
        let mut tasks: JoinSet<(QueueId, Attempted)> = JoinSet::new();
        // Messages waiting for a crowded destination, with the time they are due at the
        // latest (their entry in `due`).
        let mut parked: HashMap<String, VecDeque<(i64, QueueId)>> = HashMap::new();
        tokio::spawn(self.pool.clone().reap(shutdown.clone()));
        self.rescan(&mut due, &mut queued);
        // Attempts wait for connection slots in the pool; this bounds the envelopes in memory.
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
                tasks.spawn(async move {
                    let next = me.attempt(&first.1).await;
                    (first.1, next)
                });
            }
            let wait = due.first().map_or(Duration::from_secs(3600), |(t, _)| {
                Duration::from_millis(((t - now).max(0) as u64) * 1000 + 5)
            });
            let can_start = in_flight.len() < max_in_flight;
            tokio::select! {
                Some(id) = new.recv() => {
                    queued.insert(id.clone());
                    if !in_flight.contains(&id) {
                        due.insert((unix_now(), id));
                    }
                    self.update_gauges(&queued);
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    match joined {
                        Ok((id, attempted)) => {
                            in_flight.remove(&id);
                            let now = unix_now();
                            // A delivery there ended: the next message parked for it goes.
                            for d in &attempted.used {
                                unpark_one(&mut parked, &mut due, d, now);
                            }
                            match (attempted.next, attempted.parked_on) {
                                (Some(_), Some(d)) => {
                                    let at = now + PARKED_AT_MOST;
                                    due.insert((at, id.clone()));
                                    parked.entry(d).or_default().push_back((at, id));
                                }
                                (Some(t), None) => {
                                    due.insert((t, id));
                                }
                                (None, _) => {
                                    queued.remove(&id);
                                }
                            }
                            for dsn in attempted.dsns {
                                queued.insert(dsn.clone());
                                due.insert((unix_now(), dsn));
                            }
                        }
                        Err(e) => {
                            // A panicked attempt: its message is still in the spool; pick
                            // everything up again from there.
                            tracing::error!(error = %e, "delivery attempt failed; rescanning the spool");
                            in_flight.clear();
                            due.clear();
                            parked.clear();
                            self.rescan(&mut due, &mut queued);
                        }
                    }
                    self.update_gauges(&queued);
                }
                Some(()) = retry_all.recv() => {
                    // `queue retry`/`delete` changed the spool behind our back: start over
                    // from it, everything due now.
                    due.clear();
                    parked.clear();
                    self.rescan(&mut due, &mut queued);
                    due = due.into_iter().map(|(_, id)| (0, id)).filter(|(_, id)| !in_flight.contains(id)).collect();
                    self.update_gauges(&queued);
                }
                _ = tokio::time::sleep(wait), if can_start => {}
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        self.stop(tasks).await;
                        return;
                    }
                }
            }
        }
    }

    /// Give the deliveries under way `DELIVERY_GRACE`, then abandon the rest.
    async fn stop(&self, mut tasks: JoinSet<(QueueId, Attempted)>) {
        let running = tasks.len();
        if running == 0 {
            return;
        }
        tracing::info!(deliveries = running, "waiting for deliveries under way");
        let finished = tokio::time::timeout(DELIVERY_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                deliveries = tasks.len(),
                "deliveries abandoned at shutdown; they stay queued and go out after the restart"
            );
            tasks.shutdown().await;
        }
    }

    fn rescan(&self, due: &mut BTreeSet<(i64, QueueId)>, queued: &mut BTreeSet<QueueId>) {
        queued.clear();
        for id in self.spool.list().unwrap_or_default() {
            queued.insert(id.clone());
            match self.spool.load(&id) {
                Ok(env) => {
                    due.insert((env.next_due().unwrap_or(0), id));
                }
                Err(e) => tracing::error!(queue_id = %id, error = %e, "cannot read envelope"),
            }
        }
        self.update_gauges(queued);
    }

    /// The queue gauges: messages queued, and the age of the oldest.
    fn update_gauges(&self, queued: &BTreeSet<QueueId>) {
        self.metrics.queue_messages.set(queued.len() as i64);
        let oldest = queued
            .first()
            .and_then(QueueId::created_unix)
            .map_or(0, |t| (unix_now() - t).max(0));
        self.metrics.queue_oldest_age_seconds.set(oldest as f64);
    }

    /// A reload happened since the last attempt: the pool takes the new limits and drops the
    /// idle connections made under the old configuration.
    fn follow_reload(&self, core: &Arc<Core>) {
        let Ok(mut applied) = self.applied.lock() else {
            return;
        };
        if !Arc::ptr_eq(&applied, core) {
            let d = &core.settings.delivery;
            self.pool
                .reconfigure(d.max_connections, d.max_connections_per_domain);
            *applied = core.clone();
        }
    }

    /// One delivery attempt for the due recipients of a message.
    async fn attempt(&self, id: &QueueId) -> Attempted {
        let core = self.live.load_full();
        self.follow_reload(&core);
        let mut env = match self.spool.load(id) {
            Ok(e) => e,
            Err(SpoolError::NotFound) => return Attempted::default(),
            Err(e) => {
                tracing::error!(queue_id = %id, error = %e, "cannot read envelope");
                return Attempted {
                    next: Some(unix_now() + 300),
                    ..Attempted::default()
                };
            }
        };
        let now = unix_now();
        let loaded = env.clone();
        let mut parked_on: Option<String> = None;
        let mut used: Vec<String> = Vec::new();
        let message = self.spool.message(id, &env);
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
            let pool_key = pool_key(&core, &domain);
            if let Some(key) = &pool_key {
                if self.pool.crowded(key) {
                    // Enough deliveries already wait there; this one would only hold a slot.
                    parked_on.get_or_insert_with(|| key.clone());
                    continue;
                }
            }
            let recipients: Vec<&str> = indexes
                .iter()
                .map(|&i| env.recipients[i].address.as_str())
                .collect();
            let parcel = Parcel {
                queue_id: id.as_str(),
                sender: &env.sender,
                recipients,
                signatures: &env.signatures,
                message: &message.path,
                message_len: message.len,
                eight_bit: env.eight_bit,
                smtputf8: env.smtputf8,
            };
            let started = std::time::Instant::now();
            let outcomes = self.deliver(&core, &domain, &parcel).await;
            used.extend(pool_key);
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
        let mut dsns: Vec<QueueId> = Vec::new();
        dsns.extend(self.bounce(&core, id, &mut env, &message).await);
        dsns.extend(self.warn_delayed(&core, id, &mut env, &message).await);
        let spool = self.spool.clone();
        let id2 = id.clone();
        let done = env.is_done();
        let next = env.next_due();
        let unchanged = env == loaded;
        let result = tokio::task::spawn_blocking(move || {
            if done {
                spool.remove(&id2)
            } else if unchanged {
                // Parked without an attempt: nothing to record.
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
        let next = match (done, next) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            // Nothing pending but a DSN still owed (it could not be queued): try again soon.
            (false, None) => Some(unix_now() + 60),
        };
        Attempted {
            next,
            dsns,
            parked_on,
            used,
        }
    }

    async fn deliver(&self, core: &Core, domain: &str, parcel: &Parcel<'_>) -> Vec<Outcome> {
        let d = &core.settings.delivery;
        let courier = |policy| Courier {
            resolver: &core.resolver,
            pool: &self.pool,
            health: &self.health,
            policy,
            down_backoff: d.retry.first().copied().unwrap_or(Duration::from_secs(60)),
            tls_failures: Some(
                self.metrics
                    .tls_failures_total
                    .with_label_values(&["outbound"]),
            ),
            unannounced_8bit: Some(self.metrics.eight_bit_without_8bitmime_total.clone()),
        };
        match &d.mode {
            // Local file writes and an fsync: keep them off the async workers' backs.
            DeliveryMode::Directory(dir) => {
                let dir = dir.clone();
                let queue_id = parcel.queue_id.to_string();
                let recipients: Vec<String> =
                    parcel.recipients.iter().map(|r| r.to_string()).collect();
                let signatures = parcel.signatures.to_vec();
                let message = parcel.message.to_path_buf();
                let message_len = parcel.message_len;
                let written = tokio::task::spawn_blocking(move || {
                    let owned = Parcel {
                        queue_id: &queue_id,
                        sender: "",
                        recipients: recipients.iter().map(String::as_str).collect(),
                        signatures: &signatures,
                        message: &message,
                        message_len,
                        eight_bit: false,
                        smtputf8: false,
                    };
                    directory::deliver(&dir, &owned)
                })
                .await;
                written.unwrap_or_else(|e| {
                    parcel.all(Outcome::Temporary(format!(
                        "directory delivery failed: {e}"
                    )))
                })
            }
            DeliveryMode::RelayHost(r) => {
                let policy = Policy {
                    hostname: core.settings.hostname.clone(),
                    tls: r.tls,
                    verify_certificate: r.verify_certificate,
                    credentials: r.username.clone().zip(core.relay_password.clone()),
                    connect_timeout: d.connect_timeout,
                    command_timeout: d.command_timeout,
                };
                let hop = Hop {
                    host: r.host.clone(),
                    port: r.port,
                };
                let destination = pool_key(core, domain).unwrap_or_default();
                courier(&policy).deliver(&destination, &[hop], parcel).await
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
                    // Opportunistic MX delivery cannot check certificates (nobody publishes
                    // names to check them against without DANE/MTA-STS): as every MTA does.
                    verify_certificate: false,
                    credentials: None,
                    connect_timeout: d.connect_timeout,
                    command_timeout: d.command_timeout,
                };
                courier(&policy).deliver(domain, &hops, parcel).await
            }
        }
    }
}

/// The connection pool's name for where a group of recipients goes: the recipient domain, or
/// the relay host; `None` when no connection is involved (directory delivery).
fn pool_key(core: &Core, domain: &str) -> Option<String> {
    match &core.settings.delivery.mode {
        DeliveryMode::Mx => Some(domain.to_string()),
        DeliveryMode::RelayHost(r) => Some(format!("{}:{}", r.host, r.port)),
        DeliveryMode::Directory(_) => None,
    }
}

/// Make the first message still parked for `destination` due now.
fn unpark_one(
    parked: &mut HashMap<String, VecDeque<(i64, QueueId)>>,
    due: &mut BTreeSet<(i64, QueueId)>,
    destination: &str,
    now: i64,
) {
    let Some(waiting) = parked.get_mut(destination) else {
        return;
    };
    // Entries whose time came meanwhile went out already; they are skipped.
    while let Some((at, id)) = waiting.pop_front() {
        if due.remove(&(at, id.clone())) {
            due.insert((now, id));
            break;
        }
    }
    if waiting.is_empty() {
        parked.remove(destination);
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
                r.last_reply = Some(format!("{}{} attempts: {reply}", dsn::EXPIRED, r.attempts));
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

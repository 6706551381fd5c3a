//! The queue: which message is due when, delivery attempts bounded overall and per
//! destination (through the transport's connection limits), per-recipient outcomes written
//! back to the spool, retries on the schedule, DSNs for what failed for good, and messages
//! waiting for closed next-hop hosts (released at once when a host opens again). The spool is
//! the source of truth: at start the schedule is rebuilt from it, and every decision is
//! written to it before it counts. Where mail goes and how is the `Transport`'s business.

mod attempt;
mod bounce;
pub mod dsn;
pub mod next_hops;
pub mod reports;
pub mod retry;
#[cfg(test)]
mod tests;
mod waiting;

use crate::clock::Clock;
use crate::core::Core;
use crate::metrics::ProbeResult;
use crate::outbound::breaker::{Breaker, Event, HostView};
use crate::outbound::{MailTransport, Transport};
use crate::spool::{Committed, InHand, QueueId, Spool};
use arc_swap::ArcSwap;
use attempt::Attempted;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use waiting::Waiting;

/// After SIGTERM, how long deliveries under way may take to get their answers. Those still
/// running are then abandoned: their recipients stay pending in the spool and go out after
/// the restart (the receiver saw no final dot, or its answer was not recorded: at least once).
pub const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// A message parked behind a crowded destination goes again when a delivery there ends, or
/// after this long at the latest.
const PARKED_AT_MOST: i64 = 15;

/// While a probe is under way the scheduler looks again at least this often (a probe whose
/// task was lost is given up by the breaker after a while).
const PROBE_CHECK: i64 = 60;

/// The delivery side of the relay.
pub struct Scheduler {
    pub spool: Spool,
    pub live: Arc<ArcSwap<Core>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    transport: Arc<dyn Transport>,
    breaker: Arc<Breaker>,
    clock: Clock,
}

/// The scheduler's book: what is due when, and what waits for what.
#[derive(Default)]
struct Book {
    due: BTreeSet<(i64, QueueId)>,
    in_flight: HashSet<QueueId>,
    /// Every message in the queue, in arrival order (queue ids are time-ordered): the queue
    /// gauges come from here, not from listing the spool at every event.
    queued: BTreeSet<QueueId>,
    /// Messages waiting for a crowded destination, with the time they are due at the latest
    /// (their entry in `due`).
    parked: HashMap<String, VecDeque<(i64, QueueId)>>,
    /// Messages waiting for closed hosts.
    waiting: Waiting,
    /// Messages to try now whatever their recipients' next attempt says (`queue retry`).
    forced: HashSet<QueueId>,
    /// The message of each attempt task (a panicked task is known only by its task id).
    tasks: HashMap<tokio::task::Id, QueueId>,
    /// What the reception handed over for a message's first attempt (its envelope and,
    /// when small, its bytes), or what an attempt that was only parked handed back.
    handed: HashMap<QueueId, InHand>,
}

impl Scheduler {
    /// The relay's scheduler: delivering through `MailTransport` by the system clock,
    /// honouring recipients' transport security policies when `policies` is given.
    pub fn new(
        spool: Spool,
        live: Arc<ArcSwap<Core>>,
        metrics: Arc<crate::metrics::Metrics>,
        policies: Option<crate::outbound::transport::Policies>,
    ) -> Arc<Scheduler> {
        let d = live.load().settings.delivery.clone();
        let breaker = Arc::new(Breaker::new(Clock::System, d.retry, d.host_retry_max));
        let mut transport = MailTransport::new(live.clone(), metrics.clone(), breaker.clone());
        if let Some(p) = policies {
            transport = transport.with_policies(p);
        }
        let transport = Arc::new(transport);
        Scheduler::with_transport(spool, live, metrics, transport, breaker, Clock::System)
    }

    /// A scheduler delivering through `transport`, whose closed hosts `breaker` knows, on
    /// `clock`'s time.
    pub fn with_transport(
        spool: Spool,
        live: Arc<ArcSwap<Core>>,
        metrics: Arc<crate::metrics::Metrics>,
        transport: Arc<dyn Transport>,
        breaker: Arc<Breaker>,
        clock: Clock,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            spool,
            live,
            metrics,
            transport,
            breaker,
            clock,
        })
    }

    /// Run until shutdown: `new` announces accepted messages, `retry_all` asks to try every
    /// queued message now (`queue retry`). Sleeps until the next message or probe is due or
    /// something happens; never polls. On shutdown, deliveries under way get `DELIVERY_GRACE`.
    pub async fn run(
        self: Arc<Self>,
        mut new: mpsc::UnboundedReceiver<Committed>,
        mut retry_all: mpsc::UnboundedReceiver<()>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut book = Book::default();
        let mut tasks: JoinSet<(QueueId, Attempted)> = JoinSet::new();
        tokio::spawn(self.transport.clone().maintain(shutdown.clone()));
        self.rescan(&mut book);
        self.write_next_hops();
        // Attempts wait for connection slots in the transport; this bounds the envelopes in
        // memory.
        let max_in_flight = self.live.load().settings.delivery.max_connections.max(1) * 2;
        loop {
            let now = self.clock.now();
            let next_probe = self.release_probes(&mut book, now);
            while book.in_flight.len() < max_in_flight {
                let Some(first) = book.due.first().cloned() else {
                    break;
                };
                if first.0 > now {
                    break;
                }
                book.due.remove(&first);
                if !book.in_flight.insert(first.1.clone()) {
                    continue;
                }
                book.waiting.forget(&first.1);
                let force = book.forced.remove(&first.1);
                let handed = book.handed.remove(&first.1);
                let me = self.clone();
                let id = first.1.clone();
                let task = tasks.spawn(async move {
                    let next = me.attempt(&id, force, handed).await;
                    (id, next)
                });
                book.tasks.insert(task.id(), first.1);
            }
            let wake = book
                .due
                .first()
                .map(|(t, _)| *t)
                .into_iter()
                .chain(next_probe)
                .min();
            let wait = wake.map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(((t - now).max(0) as u64) * 1000 + 5)
            });
            let can_start = book.in_flight.len() < max_in_flight;
            tokio::select! {
                Some(Committed { id, in_hand }) = new.recv() => {
                    book.queued.insert(id.clone());
                    if !book.in_flight.contains(&id) {
                        if let Some(h) = in_hand {
                            book.handed.insert(id.clone(), h);
                        }
                        book.due.insert((self.clock.now(), id));
                    }
                    self.update_gauges(&book.queued);
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match joined {
                        Ok((task, (id, attempted))) => {
                            book.tasks.remove(&task);
                            self.attempt_ended(&mut book, id, attempted);
                        }
                        Err(e) => {
                            // A panicked attempt: its message is still in the spool; pick
                            // everything up again from there (what is in flight stays so).
                            tracing::error!(error = %e, "delivery attempt failed; rescanning the spool");
                            if let Some(id) = book.tasks.remove(&e.id()) {
                                book.in_flight.remove(&id);
                                book.waiting.attempt_ended(&id);
                            }
                            self.rescan(&mut book);
                        }
                    }
                    self.note_breaker_events(&mut book);
                    self.update_gauges(&book.queued);
                }
                Some(()) = retry_all.recv() => {
                    // `queue retry`/`delete` changed the spool behind our back: start over
                    // from it, everything due now, closed hosts probed now.
                    self.breaker.probe_now();
                    self.rescan(&mut book);
                    book.due = std::mem::take(&mut book.due)
                        .into_iter()
                        .map(|(_, id)| (0, id))
                        .collect();
                    book.forced = book.due.iter().map(|(_, id)| id.clone()).collect();
                    self.update_gauges(&book.queued);
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

    /// An attempt ended: schedule the message again, park it, let it wait for its hosts, or
    /// forget it.
    fn attempt_ended(&self, book: &mut Book, id: QueueId, mut attempted: Attempted) {
        book.in_flight.remove(&id);
        if let Some(back) = attempted.handed_back.take() {
            book.handed.insert(id.clone(), back);
        }
        let carried = book.waiting.attempt_ended(&id);
        let now = self.clock.now();
        for host in carried {
            // Its probe time passed and it went without probing the host (delivered through
            // another one: the next hops changed): the others need not wait for a probe either.
            if matches!(self.breaker.view(&host), HostView::Closed { probe_at } if probe_at <= now)
            {
                for other in book.waiting.release(&host) {
                    book.due.insert((now, other));
                }
            }
        }
        // A delivery there ended: the next message parked for it goes.
        for d in &attempted.used {
            unpark_one(&mut book.parked, &mut book.due, d, now);
        }
        if attempted.done {
            book.queued.remove(&id);
            book.waiting.forget(&id);
        } else {
            if !attempted.held_on.is_empty() {
                book.waiting.hold(&id, attempted.held_on);
            }
            match (attempted.next, attempted.parked_on) {
                (Some(_), Some(d)) => {
                    let at = now + PARKED_AT_MOST;
                    book.due.insert((at, id.clone()));
                    book.parked.entry(d).or_default().push_back((at, id));
                }
                (Some(t), None) => {
                    book.due.insert((t, id));
                }
                (None, _) => {}
            }
        }
        for dsn in attempted.dsns {
            book.queued.insert(dsn.clone());
            book.due.insert((now, dsn));
        }
    }

    /// Hosts that opened meanwhile release their messages; hosts whose probe is due get one
    /// message to carry it. Returns the next probe time to wake up for.
    fn release_probes(&self, book: &mut Book, now: i64) -> Option<i64> {
        let mut next: Option<i64> = None;
        for host in book.waiting.hosts() {
            match self.breaker.view(&host) {
                HostView::Open => {
                    for id in book.waiting.release(&host) {
                        book.due.insert((now, id));
                    }
                }
                HostView::Closed { probe_at } if probe_at <= now => {
                    if let Some(id) = book.waiting.carrier(&host) {
                        book.due.insert((now, id));
                    }
                }
                HostView::Closed { probe_at } => {
                    next = Some(next.map_or(probe_at, |n| n.min(probe_at)));
                }
                HostView::Probing => {
                    let check = now + PROBE_CHECK;
                    next = Some(next.map_or(check, |n| n.min(check)));
                }
            }
        }
        next
    }

    /// Log and count what the breaker did (once per host, never per message), release the
    /// messages of hosts that opened, and tell the queue commands.
    fn note_breaker_events(&self, book: &mut Book) {
        let (events, changed) = self.breaker.take_changes();
        if !changed {
            return;
        }
        let now = self.clock.now();
        for e in events {
            let waiting = book.waiting.count(e.host());
            match e {
                Event::Closed {
                    host,
                    reason,
                    probe_at,
                } => {
                    tracing::warn!(%host, %reason, waiting, probe_in = probe_at - now, "next hop closed: messages for it wait for one probe");
                }
                Event::ProbeFailed {
                    host,
                    reason,
                    closed_since,
                    probe_at,
                } => {
                    self.metrics.probe(ProbeResult::Failure);
                    tracing::info!(%host, %reason, waiting, closed_for = now - closed_since, next_probe_in = probe_at - now, "next hop probe failed");
                }
                Event::Reopened {
                    host,
                    closed_since,
                    probe,
                } => {
                    if probe {
                        self.metrics.probe(ProbeResult::Success);
                    }
                    let released = book.waiting.release(&host);
                    tracing::info!(%host, closed_for = now - closed_since, released = released.len(), "next hop reopened");
                    for id in released {
                        book.due.insert((now, id));
                    }
                }
            }
        }
        self.write_next_hops();
    }

    /// The closed hosts, for the gauge and for `queue list`.
    fn write_next_hops(&self) {
        self.metrics
            .next_hop_closed
            .set(self.breaker.closed_count() as i64);
        if let Err(e) = next_hops::write(self.spool.root(), &self.breaker.snapshot()) {
            tracing::warn!(error = %e, "cannot write {}", next_hops::FILE);
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

    /// Rebuild the schedule from the spool (what is in flight stays in flight, and is
    /// scheduled again when its attempt ends).
    fn rescan(&self, book: &mut Book) {
        // The spool may have changed behind our back: what was handed over may be stale.
        book.handed.clear();
        book.due.clear();
        book.parked.clear();
        book.waiting.clear();
        book.queued.clear();
        book.forced.clear();
        for id in self.spool.list().unwrap_or_default() {
            book.queued.insert(id.clone());
            if book.in_flight.contains(&id) {
                continue;
            }
            match self.spool.load(&id) {
                Ok(env) => {
                    book.due.insert((env.next_due().unwrap_or(0), id));
                }
                Err(e) => tracing::error!(queue_id = %id, error = %e, "cannot read envelope"),
            }
        }
        self.update_gauges(&book.queued);
    }

    /// The queue gauges: messages queued, and the age of the oldest.
    fn update_gauges(&self, queued: &BTreeSet<QueueId>) {
        self.metrics.queue_messages.set(queued.len() as i64);
        let oldest = queued
            .first()
            .and_then(QueueId::created_unix)
            .map_or(0, |t| (self.clock.now() - t).max(0));
        self.metrics.queue_oldest_age_seconds.set(oldest as f64);
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

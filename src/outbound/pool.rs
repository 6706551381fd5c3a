//! Outbound connections: how many may be open at once (overall and per destination), and the
//! idle ones kept briefly so the next message to the same destination rides on an open
//! connection (RSET between) instead of a new TCP + TLS + EHLO (+ AUTH) handshake.
//!
//! An idle connection keeps its two permits: it still counts as an open connection. When the
//! overall limit is reached and a message for another destination is waiting, the oldest idle
//! connection is closed to make room, so idle connections never starve a destination. A
//! destination at its limit waits for one of its own connections to come back; the pool
//! counts who waits, so the scheduler can park messages for a crowded destination.

use super::connection::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// How long an idle connection is kept for the next message (Postfix keeps 2 s; a few more
/// seconds cover a client submitting a batch one message at a time).
pub const IDLE_KEEP: Duration = Duration::from_secs(5);
/// Mail transactions on one connection before it is closed and a fresh one opened.
pub const MAX_TRANSACTIONS: u32 = 100;

/// The right to hold one open connection to a destination. Dropping it frees both slots and
/// wakes whoever waits for one.
pub struct Permits {
    overall: Option<OwnedSemaphorePermit>,
    destination: Option<OwnedSemaphorePermit>,
    changed: Arc<Notify>,
}

impl Drop for Permits {
    fn drop(&mut self) {
        // Release first, then wake: a waiter woken before the release would find no slot.
        self.overall.take();
        self.destination.take();
        self.changed.notify_waiters();
    }
}

/// One delivery waiting in `Pool::lease`, counted while it waits (also when abandoned).
struct Waiting<'a> {
    pool: &'a Pool,
    destination: String,
}

impl<'a> Waiting<'a> {
    fn new(pool: &'a Pool, destination: &str) -> Waiting<'a> {
        *pool
            .lock()
            .waiting
            .entry(destination.to_string())
            .or_default() += 1;
        Waiting {
            pool,
            destination: destination.to_string(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        if let Some(n) = st.waiting.get_mut(&self.destination) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.waiting.remove(&self.destination);
            }
        }
    }
}

/// What `Pool::lease` hands out: permits for one connection to `destination`, and an idle
/// connection to it when one was kept.
pub struct Lease {
    pub destination: String,
    idle: Option<Connection>,
    permits: Permits,
    epoch: u64,
}

struct Idle {
    conn: Connection,
    permits: Permits,
    since: Instant,
}

struct State {
    overall: Arc<Semaphore>,
    per_destination_max: usize,
    per_destination: HashMap<String, Arc<Semaphore>>,
    idle: HashMap<String, Vec<Idle>>,
    /// Deliveries waiting for a connection, per destination (see `crowded`).
    waiting: HashMap<String, usize>,
    /// Bumped by `reconfigure`: connections opened under an older configuration are not reused.
    epoch: u64,
}

/// The outbound connection limits and the idle connections.
pub struct Pool {
    state: Mutex<State>,
    changed: Arc<Notify>,
}

impl Pool {
    pub fn new(max_connections: usize, per_destination: usize) -> Pool {
        Pool {
            state: Mutex::new(State {
                overall: Arc::new(Semaphore::new(max_connections.max(1))),
                per_destination_max: per_destination.max(1),
                per_destination: HashMap::new(),
                idle: HashMap::new(),
                waiting: HashMap::new(),
                epoch: 0,
            }),
            changed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere must not stop mail.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new configuration: new limits for connections opened from now on, and the idle
    /// connections (opened under the old policy and credentials) are closed.
    pub fn reconfigure(&self, max_connections: usize, per_destination: usize) {
        let closing: Vec<Idle> = {
            let mut st = self.lock();
            st.epoch += 1;
            st.overall = Arc::new(Semaphore::new(max_connections.max(1)));
            st.per_destination_max = per_destination.max(1);
            st.per_destination.clear();
            st.idle.drain().flat_map(|(_, v)| v).collect()
        };
        close_all(closing);
        self.changed.notify_waiters();
    }

    /// Wait for the right to use a connection to `destination`: an idle one when kept, else
    /// permits to open a new one.
    pub async fn lease(&self, destination: &str) -> Lease {
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a release between the look and the wait is seen.
            notified.as_mut().enable();
            let (lease, evicted) = self.try_lease(destination);
            close_all(evicted);
            if let Some(lease) = lease {
                return lease;
            }
            if waiting.is_none() {
                waiting = Some(Waiting::new(self, destination));
            }
            notified.await;
        }
    }

    /// As many deliveries already wait for `destination` as it may have connections: one more
    /// would only wait too. The scheduler then parks the message instead of holding one of
    /// its delivery slots, so a slow destination cannot take them all.
    pub fn crowded(&self, destination: &str) -> bool {
        let st = self.lock();
        st.waiting.get(destination).copied().unwrap_or(0) >= st.per_destination_max
    }

    fn try_lease(&self, destination: &str) -> (Option<Lease>, Vec<Idle>) {
        let mut st = self.lock();
        let epoch = st.epoch;
        let mut evicted = Vec::new();
        if let Some(list) = st.idle.get_mut(destination) {
            // The most recently used first: the likeliest to be still open at the far end.
            while let Some(idle) = list.pop() {
                if idle.since.elapsed() < IDLE_KEEP {
                    let lease = Lease {
                        destination: destination.to_string(),
                        idle: Some(idle.conn),
                        permits: idle.permits,
                        epoch,
                    };
                    return (Some(lease), evicted);
                }
                evicted.push(idle);
            }
        }
        let max = st.per_destination_max;
        let slot = st
            .per_destination
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone();
        let Ok(destination_permit) = slot.try_acquire_owned() else {
            return (None, evicted);
        };
        let overall_permit = match st.overall.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Everything is in use; an idle connection elsewhere gives its place up.
                match oldest_idle(&mut st) {
                    Some(idle) => {
                        drop(idle.permits);
                        evicted.push(Idle {
                            conn: idle.conn,
                            permits: Permits {
                                overall: None,
                                destination: None,
                                changed: self.changed.clone(),
                            },
                            since: idle.since,
                        });
                        match st.overall.clone().try_acquire_owned() {
                            Ok(p) => p,
                            Err(_) => return (None, evicted),
                        }
                    }
                    None => return (None, evicted),
                }
            }
        };
        let lease = Lease {
            destination: destination.to_string(),
            idle: None,
            permits: Permits {
                overall: Some(overall_permit),
                destination: Some(destination_permit),
                changed: self.changed.clone(),
            },
            epoch,
        };
        (Some(lease), evicted)
    }

    /// A transaction ended cleanly on `conn`: keep it for the next message to the lease's
    /// destination, or close it if it has done enough or the configuration changed.
    pub fn give_back(&self, lease: Lease, conn: Connection) {
        let keep = {
            let mut st = self.lock();
            if lease.epoch == st.epoch && conn.transactions < MAX_TRANSACTIONS {
                st.idle.entry(lease.destination).or_default().push(Idle {
                    conn,
                    permits: lease.permits,
                    since: Instant::now(),
                });
                None
            } else {
                Some(Idle {
                    conn,
                    permits: lease.permits,
                    since: Instant::now(),
                })
            }
        };
        match keep {
            None => self.changed.notify_waiters(),
            Some(idle) => close_all(vec![idle]),
        }
    }

    /// Close idle connections past `IDLE_KEEP` until shutdown, then every idle one. Sleeps
    /// until the next expiry, or until a connection is given back; never polls.
    pub async fn reap(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (expired, next) = {
                let mut st = self.lock();
                let mut expired = Vec::new();
                let mut next: Option<Instant> = None;
                for list in st.idle.values_mut() {
                    let (old, fresh): (Vec<Idle>, Vec<Idle>) =
                        list.drain(..).partition(|i| i.since.elapsed() >= IDLE_KEEP);
                    expired.extend(old);
                    *list = fresh;
                    for i in list.iter() {
                        let due = i.since + IDLE_KEEP;
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
                st.idle.retain(|_, v| !v.is_empty());
                (expired, next)
            };
            close_all(expired);
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = &mut notified => {}
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        let all: Vec<Idle> = self.lock().idle.drain().flat_map(|(_, v)| v).collect();
                        close_all(all);
                        return;
                    }
                }
            }
        }
    }
}

fn oldest_idle(st: &mut State) -> Option<Idle> {
    let (key, index) = st
        .idle
        .iter()
        .flat_map(|(k, v)| {
            v.iter()
                .enumerate()
                .map(move |(i, idle)| (k, i, idle.since))
        })
        .min_by_key(|(_, _, since)| *since)
        .map(|(k, i, _)| (k.clone(), i))?;
    let list = st.idle.get_mut(&key)?;
    let idle = list.remove(index);
    if list.is_empty() {
        st.idle.remove(&key);
    }
    Some(idle)
}

/// Say QUIT on each in the background; each one's permits are freed once it is closed.
fn close_all(list: Vec<Idle>) {
    for idle in list {
        tokio::spawn(async move {
            idle.conn.quit().await;
            drop(idle.permits);
        });
    }
}

impl Lease {
    /// Take the idle connection out of the lease (to check and use it).
    pub fn take_idle(&mut self) -> Option<Connection> {
        self.idle.take()
    }
}

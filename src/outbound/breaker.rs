//! The per-host circuit breaker. A next-hop address whose connection failed (refused, timed
//! out, no greeting, TLS handshake broken) is *closed*: deliveries skip it without trying,
//! and are not charged an attempt. At its probe time one delivery is let through (the probe);
//! if it connects, the host is open again and everything that waited for it may go at once;
//! if not, it closes again and the next probe is one step further along the back-off.
//!
//! The probe interval after the n-th failure in a row is the n-th interval of the delivery
//! retry schedule (the last repeats), and never more than `delivery.host_retry_max`: so the
//! first probe comes no later than a message that met the dead host would have been retried
//! anyway, and a host down for hours is probed once per step, not once per waiting message.
//!
//! What happened is kept as events for the queue to log and count (once per host, never per
//! message), and as a `Snapshot` it writes for `queue list` (which runs in another process).
//! Must not import `queue` or `spool`.

use crate::clock::Clock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

/// A probe not heard of after this long (its delivery task was lost) no longer blocks the
/// next one.
const PROBE_LOST_AFTER: i64 = 300;

/// Destinations remembered per closed host, for `queue list` (bounded).
const MAX_DESTINATIONS: usize = 64;

/// What a delivery may do with an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The host is open: connect.
    Go,
    /// The host is closed and its probe is due: this delivery is the probe.
    Probe,
    /// The host is closed: skip it, without an attempt.
    Held,
}

/// Where a host stands, for the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostView {
    Open,
    /// Closed; one delivery goes through at `probe_at` (Unix seconds).
    Closed {
        probe_at: i64,
    },
    /// Closed, and its probe is under way.
    Probing,
}

/// A change of a host's state, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An open host failed and is closed now.
    Closed {
        host: String,
        reason: String,
        probe_at: i64,
    },
    /// The probe failed: closed again until `probe_at`.
    ProbeFailed {
        host: String,
        reason: String,
        closed_since: i64,
        probe_at: i64,
    },
    /// Open again (by the probe, or by a delivery that began before the host was closed).
    Reopened {
        host: String,
        closed_since: i64,
        probe: bool,
    },
}

impl Event {
    pub fn host(&self) -> &str {
        match self {
            Event::Closed { host, .. }
            | Event::ProbeFailed { host, .. }
            | Event::Reopened { host, .. } => host,
        }
    }
}

/// One closed host as `queue list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClosedHost {
    /// The address and port (`127.0.0.1:25`, `[2001:db8::1]:25`).
    pub host: String,
    /// The host name it was reached as (MX name, relay host).
    pub name: String,
    /// Unix time it closed.
    pub since: i64,
    /// Why (the last failure).
    pub reason: String,
    /// Failures in a row.
    pub failures: u32,
    /// Unix time of the next probe.
    pub probe_at: i64,
    /// A probe is under way.
    pub probing: bool,
    /// Destinations (recipient domains, or the relay host) whose mail waits for it.
    pub destinations: Vec<String>,
}

/// Every closed host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub hosts: Vec<ClosedHost>,
}

impl Snapshot {
    /// The closed host that mail for `destination` waits for: of those it waits for, the one
    /// whose probe comes first (not one already being probed).
    pub fn waiting_for(&self, destination: &str) -> Option<&ClosedHost> {
        self.hosts
            .iter()
            .filter(|h| h.destinations.iter().any(|d| d == destination))
            .min_by_key(|h| (h.probing, h.probe_at))
    }
}

struct Closed {
    name: String,
    since: i64,
    reason: String,
    failures: u32,
    probe_at: i64,
    /// When the probe under way began.
    probing: Option<i64>,
    destinations: BTreeSet<String>,
}

impl Closed {
    /// A probe is under way (one that began too long ago is taken for lost).
    fn probing_at(&self, now: i64) -> bool {
        self.probing.is_some_and(|t| now - t < PROBE_LOST_AFTER)
    }

    /// Remember that mail for `destination` waits; whether that is news.
    fn wait_for(&mut self, destination: &str) -> bool {
        self.destinations.len() < MAX_DESTINATIONS
            && self.destinations.insert(destination.to_string())
    }
}

struct State {
    closed: HashMap<String, Closed>,
    events: Vec<Event>,
    /// Something `snapshot` shows changed since `take_changes`.
    changed: bool,
    schedule: Vec<Duration>,
    max: Duration,
}

/// The closed hosts and their probes. Hosts are named by address and port.
pub struct Breaker {
    clock: Clock,
    state: Mutex<State>,
}

impl Breaker {
    /// `schedule`: the delivery retry intervals; `max`: `delivery.host_retry_max`.
    pub fn new(clock: Clock, schedule: Vec<Duration>, max: Duration) -> Breaker {
        Breaker {
            clock,
            state: Mutex::new(State {
                closed: HashMap::new(),
                events: Vec::new(),
                changed: false,
                schedule,
                max,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every statement leaves the state consistent; a panic elsewhere must not stop mail.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new configuration: probes from now on follow the new schedule.
    pub fn configure(&self, schedule: Vec<Duration>, max: Duration) {
        let mut st = self.lock();
        st.schedule = schedule;
        st.max = max;
    }

    /// May a delivery connect to `host`?
    pub fn admit(&self, host: &str) -> Admit {
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(c) = st.closed.get_mut(host) else {
            return Admit::Go;
        };
        let probing = c.probing_at(now);
        if !probing && c.probe_at <= now {
            c.probing = Some(now);
            return Admit::Probe;
        }
        Admit::Held
    }

    /// Mail for `destination` was held: every host it can go to is closed (these).
    pub fn held(&self, destination: &str, hosts: &[String]) {
        let mut st = self.lock();
        let mut news = false;
        for h in hosts {
            if let Some(c) = st.closed.get_mut(h) {
                news |= c.wait_for(destination);
            }
        }
        st.changed |= news;
    }

    /// A connection to `host` failed. `probe`: it was the probe (`Admit::Probe`).
    pub fn failed(&self, host: &str, name: &str, reason: &str, probe: bool) {
        let now = self.clock.now();
        let mut st = self.lock();
        let State {
            closed,
            events,
            schedule,
            max,
            ..
        } = &mut *st;
        match closed.get_mut(host) {
            None => {
                let probe_at = now + interval(schedule, *max, 1);
                let c = Closed {
                    name: name.to_string(),
                    since: now,
                    reason: reason.to_string(),
                    failures: 1,
                    probe_at,
                    probing: None,
                    destinations: BTreeSet::new(),
                };
                closed.insert(host.to_string(), c);
                events.push(Event::Closed {
                    host: host.to_string(),
                    reason: reason.to_string(),
                    probe_at,
                });
            }
            Some(c) if probe => {
                c.failures = c.failures.saturating_add(1);
                c.probe_at = now + interval(schedule, *max, c.failures);
                c.probing = None;
                c.reason = reason.to_string();
                events.push(Event::ProbeFailed {
                    host: host.to_string(),
                    reason: reason.to_string(),
                    closed_since: c.since,
                    probe_at: c.probe_at,
                });
            }
            // A delivery that began before the host was closed: the closing already counted.
            Some(_) => {}
        }
    }

    /// A connection to `host` was opened (the host answered, whatever it then said).
    pub fn succeeded(&self, host: &str, probe: bool) {
        let mut st = self.lock();
        if let Some(c) = st.closed.remove(host) {
            st.events.push(Event::Reopened {
                host: host.to_string(),
                closed_since: c.since,
                probe,
            });
        }
    }

    /// Where `host` stands.
    pub fn view(&self, host: &str) -> HostView {
        let now = self.clock.now();
        let st = self.lock();
        match st.closed.get(host) {
            None => HostView::Open,
            Some(c) if c.probing_at(now) => HostView::Probing,
            Some(c) => HostView::Closed {
                probe_at: c.probe_at,
            },
        }
    }

    /// Open every closed host (a reload: the next hops may be others now). Each one's
    /// messages go again; a host still down closes again at its first failure.
    pub fn reopen_all(&self) {
        let mut st = self.lock();
        let closed: Vec<(String, Closed)> = st.closed.drain().collect();
        for (host, c) in closed {
            st.events.push(Event::Reopened {
                host,
                closed_since: c.since,
                probe: false,
            });
        }
    }

    /// Probe every closed host at once (`queue retry`: the operator asks for everything now).
    pub fn probe_now(&self) {
        let now = self.clock.now();
        for c in self.lock().closed.values_mut() {
            c.probe_at = c.probe_at.min(now);
        }
    }

    /// The state changes since the last call, oldest first, and whether anything that
    /// `snapshot` shows changed (events, or mail for a new destination waiting).
    pub fn take_changes(&self) -> (Vec<Event>, bool) {
        let mut st = self.lock();
        let events = std::mem::take(&mut st.events);
        let changed = std::mem::take(&mut st.changed) || !events.is_empty();
        (events, changed)
    }

    /// How many hosts are closed.
    pub fn closed_count(&self) -> usize {
        self.lock().closed.len()
    }

    /// Every closed host, for `queue list`.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let st = self.lock();
        let mut hosts: Vec<ClosedHost> = st
            .closed
            .iter()
            .map(|(host, c)| ClosedHost {
                host: host.clone(),
                name: c.name.clone(),
                since: c.since,
                reason: c.reason.clone(),
                failures: c.failures,
                probe_at: c.probe_at,
                probing: c.probing_at(now),
                destinations: c.destinations.iter().cloned().collect(),
            })
            .collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Snapshot { hosts }
    }
}

/// The `n`-th interval of a retry schedule (`delivery.retry`): after the n-th failure in a row,
/// the last one repeating; `None` for an empty schedule. The queue's retries and the
/// breaker's probes step through it alike.
pub fn step(schedule: &[Duration], n: u32) -> Option<Duration> {
    schedule
        .get(n.max(1) as usize - 1)
        .or(schedule.last())
        .copied()
}

/// Seconds to the next probe after the `failures`-th failure in a row.
fn interval(schedule: &[Duration], max: Duration, failures: u32) -> i64 {
    let step = step(schedule, failures).unwrap_or(max);
    step.min(max).as_secs().max(1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        let schedule = vec![
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(900),
        ];
        Breaker::new(Clock::tokio(), schedule, Duration::from_secs(300))
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_host_is_held_until_one_probe_reopens_it() {
        let b = breaker();
        let t0 = Clock::tokio().now();
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Go);
        b.failed("192.0.2.1:25", "mx", "connect: refused", false);
        // Deliveries that were already connecting fail too: that is not a second closing.
        b.failed("192.0.2.1:25", "mx", "connect: refused", false);
        assert_eq!(
            b.take_changes().0,
            vec![Event::Closed {
                host: "192.0.2.1:25".into(),
                reason: "connect: refused".into(),
                probe_at: t0 + 5
            }]
        );
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Held);
        // Mail for a destination whose every host is closed is held: `queue list` says so.
        b.held("example.org", &["192.0.2.1:25".to_string()]);
        assert_eq!(b.take_changes(), (vec![], true));
        assert_eq!(
            b.view("192.0.2.1:25"),
            HostView::Closed { probe_at: t0 + 5 }
        );
        let snap = b.snapshot();
        assert_eq!(snap.hosts[0].destinations, vec!["example.org"]);
        assert_eq!(
            snap.waiting_for("example.org").map(|h| h.host.as_str()),
            Some("192.0.2.1:25")
        );
        assert!(snap.waiting_for("example.net").is_none());

        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Probe);
        // One probe at a time.
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Held);
        assert_eq!(b.view("192.0.2.1:25"), HostView::Probing);
        b.failed("192.0.2.1:25", "mx", "connect: refused", true);
        // The second step of the schedule: 60 s.
        assert_eq!(
            b.view("192.0.2.1:25"),
            HostView::Closed { probe_at: t0 + 65 }
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Probe);
        b.succeeded("192.0.2.1:25", true);
        assert_eq!(b.view("192.0.2.1:25"), HostView::Open);
        assert_eq!(b.closed_count(), 0);
        let events = b.take_changes().0;
        assert!(matches!(events[0], Event::ProbeFailed { probe_at, .. } if probe_at == t0 + 65));
        assert!(
            matches!(events[1], Event::Reopened { closed_since, probe: true, .. } if closed_since == t0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_opens_every_closed_host_and_retry_probes_now() {
        let b = breaker();
        b.failed("192.0.2.1:25", "mx1", "connect: refused", false);
        b.failed("192.0.2.2:25", "mx2", "connect: refused", false);
        b.take_changes();
        // `queue retry`: probes are due now, one per host.
        b.probe_now();
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Probe);
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Held);
        b.reopen_all();
        assert_eq!(b.closed_count(), 0);
        assert_eq!(b.admit("192.0.2.1:25"), Admit::Go);
        let (events, changed) = b.take_changes();
        assert!(changed);
        assert_eq!(events.len(), 2);
        assert!(events
            .iter()
            .all(|e| matches!(e, Event::Reopened { probe: false, .. })));
    }

    #[test]
    fn probe_intervals_follow_the_schedule_up_to_the_maximum() {
        let s = [
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(900),
        ];
        let max = Duration::from_secs(300);
        let steps: Vec<i64> = (1..=5).map(|n| interval(&s, max, n)).collect();
        assert_eq!(steps, vec![5, 60, 300, 300, 300]);
        assert_eq!(interval(&[], max, 1), 300);
    }
}

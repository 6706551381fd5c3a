//! The scheduler against a scripted transport, on tokio's paused clock: hours of retry
//! schedule run in milliseconds, and every time below is exact to the second.

use super::*;
use crate::metrics::Metrics;
use crate::outbound::breaker::Admit;
use crate::outbound::transport::Delivering;
use crate::outbound::{Outcome, Parcel};
use crate::spool::{Envelope, InHand};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Semaphore;

/// The one next-hop host of the scripted transport.
const HOST: &str = "192.0.2.25:25";

/// One delivery the transport saw.
#[derive(Clone, Debug)]
struct Call {
    at: i64,
    queue_id: String,
    sender: String,
    recipients: Vec<String>,
    /// It was the breaker's probe.
    probe: bool,
    /// The host took the connection.
    connected: bool,
}

#[derive(Default)]
struct ScriptState {
    calls: Vec<Call>,
    /// Replies per recipient, in order ("451 ..." temporary, "550 ..." permanent); then 250.
    replies: HashMap<String, VecDeque<&'static str>>,
    /// The host refuses connections until this time.
    down_until: i64,
    /// Panic (once) when delivering to this recipient.
    panic_once: Option<String>,
    /// Deliveries holding / waiting for a connection slot, per destination.
    active: HashMap<String, usize>,
    max_active: HashMap<String, usize>,
    waiting: HashMap<String, usize>,
    /// Deliveries under way at once, all destinations, and the most seen.
    overall: usize,
    max_overall: usize,
    /// The bodies of DSNs delivered.
    dsns: Vec<String>,
}

/// A transport whose host, replies and timing a test decides. It goes through the real
/// breaker as the SMTP courier does: admit, then a connection that succeeds or fails.
struct Script {
    clock: Clock,
    breaker: Arc<Breaker>,
    state: Mutex<ScriptState>,
    per_destination: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// How long a delivery takes once connected.
    takes: Duration,
}

impl Script {
    fn st(&self) -> std::sync::MutexGuard<'_, ScriptState> {
        self.state.lock().unwrap()
    }

    fn slot(&self, destination: &str) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap();
        slots
            .entry(destination.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone()
    }

    async fn run(&self, parcel: &Parcel<'_>) -> Vec<Outcome> {
        let destination = self.destination(parcel.recipients[0]);
        let probe = match self.breaker.admit(HOST) {
            Admit::Go => false,
            Admit::Probe => true,
            Admit::Held => {
                self.breaker.held(&destination, &[HOST.to_string()]);
                return parcel.all(Outcome::Held(vec![HOST.to_string()]));
            }
        };
        *self.st().waiting.entry(destination.clone()).or_default() += 1;
        let slot = self.slot(&destination);
        let _permit = slot.acquire().await.unwrap();
        {
            let mut st = self.st();
            *st.waiting.entry(destination.clone()).or_default() -= 1;
            let n = st.active.entry(destination.clone()).or_default();
            *n += 1;
            let n = *n;
            let max = st.max_active.entry(destination.clone()).or_default();
            *max = (*max).max(n);
            st.overall += 1;
            st.max_overall = st.max_overall.max(st.overall);
        }
        let panics = {
            let mut st = self.st();
            let hit = st
                .panic_once
                .as_ref()
                .is_some_and(|p| parcel.recipients.contains(&p.as_str()));
            if hit {
                st.panic_once = None;
            }
            hit
        };
        assert!(!panics, "scripted panic");
        let now = self.clock.now();
        let connected = now >= self.st().down_until;
        let outcomes = if connected {
            self.breaker.succeeded(HOST, probe);
            tokio::time::sleep(self.takes).await;
            let mut st = self.st();
            parcel
                .recipients
                .iter()
                .map(
                    |r| match st.replies.get_mut(*r).and_then(VecDeque::pop_front) {
                        Some(reply) if reply.starts_with('5') => Outcome::Permanent(reply.into()),
                        Some(reply) => Outcome::Temporary(reply.into()),
                        None => Outcome::Delivered("250 2.0.0 ok".into()),
                    },
                )
                .collect()
        } else {
            self.breaker
                .failed(HOST, "mx.test", "connect: refused", probe);
            parcel.all(Outcome::Temporary(format!(
                "mx.test [{HOST}]: connect: refused"
            )))
        };
        if parcel.sender.is_empty() {
            let body = match parcel.message {
                crate::outbound::Message::File { path, .. } => {
                    std::fs::read(path).unwrap_or_default()
                }
                crate::outbound::Message::InMemory(bytes) => bytes.to_vec(),
            };
            self.st()
                .dsns
                .push(String::from_utf8_lossy(&body).into_owned());
        }
        let mut st = self.st();
        *st.active.entry(destination).or_default() -= 1;
        st.overall -= 1;
        st.calls.push(Call {
            at: now,
            queue_id: parcel.queue_id.to_string(),
            sender: parcel.sender.to_string(),
            recipients: parcel.recipients.iter().map(|r| r.to_string()).collect(),
            probe,
            connected,
        });
        outcomes
    }
}

impl Transport for Script {
    fn destination(&self, recipient: &str) -> String {
        crate::smtp::address::domain_of(recipient).unwrap_or_default()
    }

    fn crowded(&self, destination: &str) -> bool {
        self.st().waiting.get(destination).copied().unwrap_or(0) >= self.per_destination
    }

    fn deliver<'a>(&'a self, parcel: &'a Parcel<'a>) -> Delivering<'a> {
        Box::pin(self.run(parcel))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    spool: Spool,
    script: Arc<Script>,
    metrics: Arc<Metrics>,
    clock: Clock,
    start: tokio::time::Instant,
    new: mpsc::UnboundedSender<Committed>,
    retry: mpsc::UnboundedSender<()>,
    _shutdown: watch::Sender<bool>,
}

/// A scheduler with `delivery` (YAML lines under `delivery:`), delivering through a script
/// whose deliveries take `takes` and that allows `per_destination` connections per domain.
fn start(delivery: &str, per_destination: usize, takes: Duration) -> Harness {
    // In memory where there is a tmpfs: the spool's fsyncs then cost nothing, whatever else
    // the machine's disk is doing.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: relay.test\nspool_dir: {spool}\nlisteners:\n  - address: \"127.0.0.1:2525\"\n\
             dns:\n  nameservers: [\"127.0.0.1:9\"]\n  check_interval: 0s\n\
             delivery:\n  mode: directory\n  directory: {out}\n{delivery}",
            spool = dir.path().join("spool").display(),
            out = dir.path().join("out").display(),
        ),
    )
    .unwrap();
    let core = Core::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let d = core.settings.delivery.clone();
    let clock = Clock::tokio();
    let breaker = Arc::new(Breaker::new(clock.clone(), d.retry, d.host_retry_max));
    let script = Arc::new(Script {
        clock: clock.clone(),
        breaker: breaker.clone(),
        state: Mutex::new(ScriptState::default()),
        per_destination,
        slots: Mutex::new(HashMap::new()),
        takes,
    });
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::with_transport(
        spool.clone(),
        Arc::new(ArcSwap::from_pointee(core)),
        metrics.clone(),
        script.clone(),
        breaker,
        clock.clone(),
    );
    let (new, new_rx) = mpsc::unbounded_channel();
    let (retry, retry_rx) = mpsc::unbounded_channel();
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(scheduler.run(new_rx, retry_rx, shutdown_rx));
    Harness {
        _dir: dir,
        spool,
        script,
        metrics,
        clock,
        start: tokio::time::Instant::now(),
        new,
        retry,
        _shutdown: shutdown,
    }
}

impl Harness {
    /// A small message written to a draft, and its envelope, ready to commit.
    fn drafted(
        &self,
        sender: &str,
        recipients: &[&str],
    ) -> (QueueId, crate::spool::Draft, Envelope) {
        let id = QueueId::new();
        let body = b"From: app@example.com\r\nSubject: test\r\n\r\nhello\r\n";
        let mut draft = self.spool.draft(id.clone()).unwrap();
        draft.write(body).unwrap();
        let env = Envelope {
            size: body.len() as u64,
            ..Envelope::new(
                sender.to_string(),
                recipients.iter().map(|r| r.to_string()),
                self.clock.now(),
                "test".into(),
            )
        };
        (id, draft, env)
    }

    /// Queue a message and announce its id (the scheduler reads the rest from the spool).
    fn submit(&self, sender: &str, recipients: &[&str]) -> QueueId {
        let (id, draft, env) = self.drafted(sender, recipients);
        self.spool.commit(draft, &env).unwrap();
        self.new.send(Committed::id_only(id.clone())).unwrap();
        id
    }

    /// Queue a message as the daemon's reception does: its envelope and bytes handed over in
    /// memory with the announcement.
    fn submit_handed(&self, sender: &str, recipients: &[&str]) -> QueueId {
        let (id, draft, env) = self.drafted(sender, recipients);
        let bytes = self.spool.commit_keeping(draft, &env).unwrap();
        assert!(bytes.is_some(), "a small message is handed over whole");
        self.new
            .send(Committed {
                id: id.clone(),
                in_hand: Some(InHand {
                    envelope: env,
                    bytes,
                }),
            })
            .unwrap();
        id
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn calls(&self) -> Vec<Call> {
        self.script.st().calls.clone()
    }

    fn delivered(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.connected).collect()
    }

    /// Nothing is left in the spool.
    fn spool_empty(&self) -> bool {
        self.spool.list().unwrap().is_empty()
    }

    /// Let paused time run until `cond` holds, for at most `limit` of it.
    async fn until(&self, limit: Duration, cond: impl Fn(&Harness) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            if cond(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cond(self)
    }

    /// Let paused time run for `d`.
    async fn run_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_schedule_with_bounded_jitter() {
    let h = start("  retry: [10s, 60s]\n", 4, Duration::ZERO);
    let t0 = h.now();
    h.script.st().replies.insert(
        "a@example.net".into(),
        VecDeque::from(["451 4.2.0 busy", "451 4.2.0 busy", "451 4.2.0 busy"]),
    );
    h.submit("app@example.com", &["a@example.net"]);
    assert!(
        h.until(Duration::from_secs(600), |h| h.calls().len() >= 4)
            .await
    );
    let at: Vec<i64> = h.calls().iter().map(|c| c.at - t0).collect();
    assert_eq!(at[0], 0, "{at:?}");
    // 10 s ±10%, then 60 s ±10% and again 60 s (the last interval repeats); the clock reads
    // whole seconds, so one second of slack.
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!((9..=12).contains(&gaps[0]), "{gaps:?}");
    assert!((54..=67).contains(&gaps[1]), "{gaps:?}");
    assert!((54..=67).contains(&gaps[2]), "{gaps:?}");
    assert!(h.until(Duration::from_secs(5), Harness::spool_empty).await);
    assert!(h
        .metrics
        .render()
        .contains("dkim_relay_deliveries_total{result=\"deferred\"} 3"));
    assert!(h
        .metrics
        .render()
        .contains("dkim_relay_deliveries_total{result=\"delivered\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn too_old_bounces_with_a_dsn_to_the_sender() {
    let h = start("  retry: [10s]\n  max_age: 30s\n", 4, Duration::ZERO);
    h.script.st().replies.insert(
        "a@example.net".into(),
        VecDeque::from(["451 4.2.0 busy"; 10]),
    );
    h.submit("app@example.com", &["a@example.net"]);
    assert!(
        h.until(Duration::from_secs(120), |h| !h.script.st().dsns.is_empty())
            .await
    );
    let calls = h.calls();
    let to_sender: Vec<&Call> = calls.iter().filter(|c| c.sender.is_empty()).collect();
    assert_eq!(to_sender.len(), 1, "{calls:?}");
    assert_eq!(to_sender[0].recipients, vec!["app@example.com"]);
    // Attempts at 0, ~10, ~20, ~30: the one at or after 30 s gives up.
    let tries = calls
        .iter()
        .filter(|c| c.recipients == ["a@example.net"])
        .count();
    assert!((4..=5).contains(&tries), "{calls:?}");
    let dsn = h.script.st().dsns[0].clone();
    assert!(dsn.contains("Action: failed\r\nStatus: 4.4.7\r\n"), "{dsn}");
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 451 4.2.0 busy"),
        "{dsn}"
    );
    assert!(h.until(Duration::from_secs(5), Harness::spool_empty).await);
}

#[tokio::test(start_paused = true)]
async fn a_crowded_destination_is_parked_and_does_not_hold_up_the_others() {
    // Two connections per domain, deliveries of 10 s, eight attempts at once at most.
    let h = start("  max_connections: 4\n", 2, Duration::from_secs(10));
    let t0 = h.now();
    for i in 0..10 {
        h.submit("app@example.com", &[&format!("r{i}@slow.test")]);
    }
    h.run_for(Duration::from_millis(500)).await;
    h.submit("app@example.com", &["x@fast.test"]);
    assert!(
        h.until(Duration::from_secs(300), |h| h.delivered().len() == 11)
            .await
    );
    let calls = h.delivered();
    let fast = calls
        .iter()
        .find(|c| c.recipients == ["x@fast.test"])
        .unwrap();
    // The fast destination went at once although slow.test had ten messages due before it.
    assert!(fast.at - t0 <= 1, "{calls:?}");
    let st = h.script.st();
    assert_eq!(st.max_active["slow.test"], 2, "per-destination bound");
    assert!(st.max_overall <= 8, "overall bound: {}", st.max_overall);
    // Parked messages went as slots freed, not 15 s later each: 5 rounds of 10 s.
    let last = calls.iter().map(|c| c.at).max().unwrap() - t0;
    assert!(last <= 45, "{last}");
}

#[tokio::test(start_paused = true)]
async fn a_message_deleted_while_its_envelope_is_in_hand_is_not_delivered() {
    // One connection to slow.test, deliveries of 10 s: the first goes, the second waits for
    // the connection, the third is parked with its envelope and bytes kept in memory.
    let h = start("", 1, Duration::from_secs(10));
    let first = h.submit_handed("app@example.com", &["a@slow.test"]);
    h.run_for(Duration::from_millis(100)).await;
    let second = h.submit_handed("app@example.com", &["b@slow.test"]);
    h.run_for(Duration::from_millis(100)).await;
    let third = h.submit_handed("app@example.com", &["c@slow.test"]);
    h.run_for(Duration::from_millis(100)).await;
    // `queue delete` as the operator's command does it: on the files, no signal.
    h.spool.remove(&third).unwrap();
    assert!(
        h.until(Duration::from_secs(120), |h| h.delivered().len() == 2
            && h.spool_empty())
            .await,
        "{:?}",
        h.calls()
    );
    h.run_for(Duration::from_secs(60)).await;
    let delivered: Vec<_> = h.delivered().into_iter().map(|c| c.recipients).collect();
    assert_eq!(
        delivered,
        [
            vec!["a@slow.test".to_string()],
            vec!["b@slow.test".to_string()]
        ],
        "the deleted message went out: {first} {second} {third}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicked_attempt_is_picked_up_again_from_the_spool() {
    let h = start("", 4, Duration::ZERO);
    h.script.st().panic_once = Some("boom@example.net".into());
    let boom = h.submit("app@example.com", &["boom@example.net"]);
    let fine = h.submit("app@example.com", &["fine@example.net"]);
    assert!(
        h.until(Duration::from_secs(10), |h| h.delivered().len() == 2)
            .await
    );
    let ids: Vec<String> = h.delivered().iter().map(|c| c.queue_id.clone()).collect();
    assert!(ids.contains(&boom.to_string()) && ids.contains(&fine.to_string()));
    assert!(h.until(Duration::from_secs(5), Harness::spool_empty).await);
}

#[tokio::test(start_paused = true)]
async fn retry_all_makes_everything_due_now() {
    let h = start("  retry: [1h]\n", 4, Duration::ZERO);
    h.script
        .st()
        .replies
        .insert("a@example.net".into(), VecDeque::from(["451 4.2.0 busy"]));
    h.submit("app@example.com", &["a@example.net"]);
    assert!(
        h.until(Duration::from_secs(5), |h| h.calls().len() == 1)
            .await
    );
    h.run_for(Duration::from_secs(60)).await;
    assert_eq!(h.calls().len(), 1, "not before an hour");
    let asked = h.now();
    h.retry.send(()).unwrap();
    assert!(
        h.until(Duration::from_secs(2), |h| h.calls().len() == 2)
            .await
    );
    assert!(h.calls()[1].at - asked <= 1);
    assert!(h.until(Duration::from_secs(2), Harness::spool_empty).await);
}

#[tokio::test(start_paused = true)]
async fn a_host_back_after_ten_seconds_gets_its_backlog_within_one_retry_interval() {
    let h = start("  retry: [5s]\n", 8, Duration::ZERO);
    let t0 = h.now();
    h.script.st().down_until = t0 + 10;
    let mut ids = Vec::new();
    // Steady submissions while the host is down.
    for second in 0..10 {
        for i in 0..3 {
            ids.push(h.submit("app@example.com", &[&format!("r{second}-{i}@example.net")]));
        }
        h.run_for(Duration::from_secs(1)).await;
    }
    assert!(
        h.until(Duration::from_secs(60), |h| h.delivered().len()
            == ids.len())
            .await
    );
    let calls = h.calls();
    let last = h.delivered().iter().map(|c| c.at).max().unwrap();
    assert!(
        last <= t0 + 10 + 5 + 1,
        "backlog went {}s after the host came back",
        last - t0 - 10
    );
    // Every message once: no duplicates.
    let mut delivered: Vec<String> = h.delivered().iter().map(|c| c.queue_id.clone()).collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), ids.len());
    // While down: the first delivery failed, then one probe per 5 s — not one try per message.
    let refused = calls.iter().filter(|c| !c.connected).count();
    assert!(refused <= 3, "{refused} refused tries: {calls:?}");
    let text = h.metrics.render();
    assert!(
        text.contains("dkim_relay_delivery_probes_total{result=\"success\"} 1"),
        "{text}"
    );
    assert!(text.contains("dkim_relay_next_hop_closed 0"), "{text}");
    assert!(h.until(Duration::from_secs(5), Harness::spool_empty).await);
    assert!(next_hops::read(h.spool.root()).hosts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_host_down_for_an_hour_is_probed_once_per_step_and_waiting_is_not_charged() {
    let h = start(
        "  retry: [1m, 5m, 15m]\n  host_retry_max: 5m\n",
        8,
        Duration::ZERO,
    );
    let t0 = h.now();
    h.script.st().down_until = i64::MAX;
    let ids: Vec<QueueId> = (0..10)
        .map(|i| h.submit("app@example.com", &[&format!("r{i}@example.net")]))
        .collect();
    h.run_for(Duration::from_secs(3600)).await;
    let calls = h.calls();
    let probes: Vec<i64> = calls
        .iter()
        .filter(|c| c.probe)
        .map(|c| c.at - t0)
        .collect();
    // Probes at 1 min, then every 5 min (the schedule's 5m, 15m capped at host_retry_max).
    assert_eq!(probes.first(), Some(&60), "{probes:?}");
    assert!(probes.windows(2).all(|w| w[1] - w[0] == 300), "{probes:?}");
    assert_eq!(probes.len(), 12, "{probes:?}");
    let first_wave = calls.iter().filter(|c| !c.probe && c.at == t0).count();
    assert_eq!(
        calls.len(),
        first_wave + probes.len(),
        "no try but the first and the probes"
    );
    // Each message's attempt counter is the number of times it was really tried.
    for id in &ids {
        let env = h.spool.load(id).unwrap();
        let tried = calls.iter().filter(|c| c.queue_id == id.as_str()).count() as u32;
        assert_eq!(env.recipients[0].attempts, tried, "{id}");
    }
    let text = h.metrics.render();
    assert!(text.contains("dkim_relay_next_hop_closed 1"), "{text}");
    assert!(
        text.contains("dkim_relay_delivery_probes_total{result=\"failure\"} 12"),
        "{text}"
    );
    // What `queue list` reads.
    let snapshot = next_hops::read(h.spool.root());
    assert_eq!(snapshot.hosts.len(), 1);
    assert_eq!(snapshot.hosts[0].host, HOST);
    assert_eq!(snapshot.hosts[0].reason, "connect: refused");
    assert_eq!(snapshot.hosts[0].destinations, vec!["example.net"]);
    assert!(snapshot.hosts[0].probe_at > h.now());
    assert!(h.start.elapsed() >= Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn messages_held_for_a_host_that_never_opens_expire_at_max_age() {
    let h = start(
        "  retry: [1m]\n  host_retry_max: 5m\n  max_age: 10m\n",
        8,
        Duration::ZERO,
    );
    let t0 = h.now();
    h.script.st().down_until = i64::MAX;
    let ids: Vec<QueueId> = (0..5)
        .map(|i| h.submit("app@example.com", &[&format!("r{i}@example.net")]))
        .collect();
    h.run_for(Duration::from_secs(9 * 60)).await;
    assert!(
        ids.iter().all(|id| h.spool.load(id).is_ok()),
        "not before max_age"
    );
    h.run_for(Duration::from_secs(2 * 60)).await;
    // Each is gone, and a DSN to the sender is queued for each (its host is down too).
    for id in &ids {
        assert!(h.spool.load(id).is_err(), "{id} still queued");
    }
    let dsns: Vec<Envelope> = h
        .spool
        .list()
        .unwrap()
        .iter()
        .filter_map(|id| h.spool.load(id).ok())
        .filter(|e| e.is_dsn)
        .collect();
    assert_eq!(dsns.len(), ids.len());
    assert!(h.now() - t0 <= 11 * 60);
}

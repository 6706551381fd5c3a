//! The status page (`GET /status` on `metrics.address`): what a person wants to see at a
//! glance — the DNS doctor's last result per domain and check, the queue (how many, how old,
//! the ten oldest messages with each recipient's last reply), the last hour's accepted /
//! delivered / deferred / bounced / rejected counts, the signing selectors and their rotation
//! state, and the spool's free space. [`html`] renders it for a browser (server-side, no
//! script, readable on a phone, everything from clients and remote servers escaped);
//! `?format=json` gives the same [`Snapshot`] as JSON.
//!
//! Recipient addresses appear only for the ten oldest messages; no secrets ever (no keys, no
//! password hashes, no message content). May import config, core, spool, dkim (rotation state), metrics
//! and the DNS doctor's result types; nothing imports it but `app`.

pub mod html;
pub mod ring;

use crate::clock::unix_now;
use crate::core::Core;
use crate::metrics::{Metrics, Page, StatusPage};
use crate::spool::{RecipientState, Spool};
use crate::tools::dns_check::CheckResult;
use arc_swap::ArcSwap;
use ring::{MinuteRing, Window};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How many of the oldest messages the page lists.
pub const OLDEST_SHOWN: usize = 10;

/// Everything the page shows, as of `generated_at`.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub hostname: String,
    pub version: &'static str,
    /// Unix time.
    pub generated_at: i64,
    pub uptime_seconds: i64,
    pub spool: SpoolSpace,
    pub last_hour: Window,
    pub queue: Queue,
    pub dns: DnsDoctor,
    pub signing: Vec<SigningSelector>,
    /// Rotation state files that could not be read.
    pub problems: Vec<String>,
}

/// One selector of a signing domain: whether it signs new mail, and its rotation state.
#[derive(Debug, Serialize)]
pub struct SigningSelector {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`, for the selectors that sign.
    pub algorithm: Option<&'static str>,
    /// `config` or `rotation`.
    pub source: &'static str,
    pub signing: bool,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct SpoolSpace {
    /// Bytes free for the relay on the spool's file system (`None`: statvfs failed).
    pub free_bytes: Option<u64>,
    pub min_free_bytes: u64,
    /// Below the minimum: MAIL gets 452 4.3.1 and /readyz 503.
    pub short: bool,
}

#[derive(Debug, Serialize)]
pub struct Queue {
    pub messages: usize,
    pub oldest_age_seconds: Option<i64>,
    pub oldest: Vec<QueuedMessage>,
}

#[derive(Debug, Serialize)]
pub struct QueuedMessage {
    pub queue_id: String,
    pub received_at: i64,
    pub age_seconds: i64,
    pub size: u64,
    /// The envelope sender; empty for `<>` (a bounce).
    pub sender: String,
    pub recipients: Vec<QueuedRecipient>,
}

#[derive(Debug, Serialize)]
pub struct QueuedRecipient {
    pub address: String,
    pub state: RecipientState,
    pub attempts: u32,
    /// Unix time of the next attempt (pending recipients): the probe time of the closed host
    /// it waits for, if any.
    pub next_attempt: Option<i64>,
    /// The closed next-hop host a pending recipient waits for (`name [address:port]`), and why
    /// it was closed.
    pub waiting_for: Option<WaitingFor>,
    /// The last reply of the receiving server (or why there was none): remote text.
    pub last_reply: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WaitingFor {
    pub host: String,
    pub closed_since: i64,
    /// The failure that closed it: remote or system text.
    pub reason: String,
    pub probe_at: i64,
}

#[derive(Debug, Serialize)]
pub struct DnsDoctor {
    /// `dns.check_interval` is not 0s.
    pub enabled: bool,
    pub interval_seconds: u64,
    /// When the last pass ended (`None`: none has yet).
    pub checked_at: Option<i64>,
    pub results: Vec<CheckResult>,
}

/// The live state the page is made from; shared by the HTTP endpoint, the DNS doctor (which
/// hands it each pass) and a minute ticker (which samples the totals).
pub struct StatusBoard {
    metrics: Arc<Metrics>,
    live: Arc<ArcSwap<Core>>,
    spool: Spool,
    started: i64,
    doctor: Mutex<Option<(i64, Vec<CheckResult>)>>,
    ring: Mutex<MinuteRing>,
}

impl StatusBoard {
    pub fn new(metrics: Arc<Metrics>, live: Arc<ArcSwap<Core>>, spool: Spool) -> StatusBoard {
        let board = StatusBoard {
            metrics,
            live,
            spool,
            started: unix_now(),
            doctor: Mutex::new(None),
            ring: Mutex::new(MinuteRing::default()),
        };
        board.sample();
        board
    }

    /// The DNS doctor's latest pass.
    pub fn record_doctor(&self, results: &[CheckResult]) {
        *self.doctor.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((unix_now(), results.to_vec()));
    }

    /// Keep this minute's totals (the ticker calls it every minute).
    pub fn sample(&self) {
        let totals = self.metrics.totals();
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(unix_now(), totals);
    }

    /// Sample the totals every minute until shutdown.
    pub fn spawn_ticker(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let board = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = ticks.tick() => board.sample(),
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// Everything, now. Reads the spool (the queue listing and ten envelopes) and the
    /// rotation state: blocking.
    pub fn snapshot(&self) -> Snapshot {
        let now = unix_now();
        let core = self.live.load_full();
        let settings = &core.settings;
        let min_free = settings.limits.spool_min_free;
        let free = self.spool.free_space().available().ok();
        let last_hour = self
            .ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .window(now, self.metrics.totals());
        let (states, problems) = crate::dkim::rotation::selector_states(
            &crate::dkim::rotation::state_dir(&settings.spool_dir),
            &crate::core::configured_selectors(settings),
            now,
        );
        let algorithm = |domain: &str, selector: &str| {
            core.signers
                .domains()
                .filter(|(d, _)| d.as_str() == domain)
                .flat_map(|(_, list)| list.iter())
                .find(|s| s.selector == selector)
                .map(|s| s.algorithm.tag())
        };
        let signing = states
            .into_iter()
            .map(|s| SigningSelector {
                algorithm: algorithm(&s.domain, &s.selector),
                domain: s.domain,
                selector: s.selector,
                source: s.source,
                signing: s.signing,
                state: s.state,
            })
            .collect();
        let doctor = self
            .doctor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Snapshot {
            hostname: settings.hostname.clone(),
            version: env!("CARGO_PKG_VERSION"),
            generated_at: now,
            uptime_seconds: now - self.started,
            spool: SpoolSpace {
                free_bytes: free,
                min_free_bytes: min_free,
                short: min_free > 0 && free.is_some_and(|f| f < min_free),
            },
            last_hour,
            queue: self.queue(now),
            dns: DnsDoctor {
                enabled: !settings.dns.check_interval.is_zero(),
                interval_seconds: settings.dns.check_interval.as_secs(),
                checked_at: doctor.as_ref().map(|(t, _)| *t),
                results: doctor.map(|(_, r)| r).unwrap_or_default(),
            },
            signing,
            problems,
        }
    }

    /// The queue: every id (time-ordered, so the first are the oldest), and the envelopes of
    /// the oldest [`OLDEST_SHOWN`] that are still there.
    fn queue(&self, now: i64) -> Queue {
        let ids = match self.spool.list() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "status page: cannot list the queue");
                Vec::new()
            }
        };
        // The daemon's own view of closed hosts (the file it writes for `queue list`): a held
        // recipient's envelope still holds its old due time; the probe time is the truth.
        let core = self.live.load();
        let closed = crate::queue::next_hops::read(&core.settings.spool_dir);
        let waiting = |address: &str| {
            let destination =
                crate::outbound::transport::destination(&core.settings.delivery, address);
            closed.waiting_for(&destination).map(|h| WaitingFor {
                host: format!("{} [{}]", h.name, h.host),
                closed_since: h.since,
                reason: h.reason.clone(),
                probe_at: h.probe_at,
            })
        };
        let oldest: Vec<QueuedMessage> = ids
            .iter()
            // A message delivered since the listing is simply not shown.
            .filter_map(|id| self.spool.load(id).ok().map(|env| (id, env)))
            .take(OLDEST_SHOWN)
            .map(|(id, env)| QueuedMessage {
                queue_id: id.to_string(),
                received_at: env.received_at,
                age_seconds: (now - env.received_at).max(0),
                size: env.size,
                sender: env.sender.clone(),
                recipients: env
                    .recipients
                    .iter()
                    .map(|r| {
                        let pending = r.state == RecipientState::Pending;
                        let waiting_for = pending.then(|| waiting(&r.address)).flatten();
                        QueuedRecipient {
                            address: r.address.clone(),
                            state: r.state,
                            attempts: r.attempts,
                            next_attempt: match &waiting_for {
                                Some(w) => Some(w.probe_at),
                                None => pending.then_some(r.next_attempt),
                            },
                            waiting_for,
                            last_reply: r.last_reply.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        Queue {
            messages: ids.len(),
            oldest_age_seconds: ids
                .first()
                .and_then(|id| id.created_unix())
                .map(|t| (now - t).max(0)),
            oldest,
        }
    }
}

impl StatusPage for StatusBoard {
    fn render(&self, json: bool) -> Page {
        let snapshot = self.snapshot();
        if json {
            let mut body = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            body.push(b'\n');
            return Page {
                content_type: "application/json",
                headers: vec![("cache-control", "no-store".to_string())],
                body,
            };
        }
        Page {
            content_type: "text/html; charset=utf-8",
            headers: html::headers(),
            body: html::render(&snapshot).into_bytes(),
        }
    }
}

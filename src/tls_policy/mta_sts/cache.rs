//! The MTA-STS policy cache (RFC 8461 5.1): one file per domain in `<spool>/mta-sts/`, so
//! policies survive restarts, and their copy in memory.
//!
//! At delivery the domain's `_mta-sts` TXT record is asked first (cheap, and how a new policy
//! announces itself). The same id as the cached policy: the cached one applies. A new id (or
//! no cached policy): the policy is fetched — once per domain however many deliveries ask at
//! the same time — and a delivery with a cached policy waits for it only briefly, then goes
//! on under the cached one while the fetch finishes in the background. A fetch that fails
//! leaves the cached policy in force until it expires; with none cached, the domain has no
//! policy for now, and the same id is not fetched again for five minutes (3.3). A missing or
//! unanswerable TXT record does not remove a cached policy either (3.1). Policies in use are
//! refreshed in the background before they expire ([`StsCache::refresh_due`]).

use super::fetch::{self, FetchError};
use super::policy::{StsMode, StsPolicy};
use super::record::{self, Discovery};
use crate::tls_policy::https::Limits;
use crate::tls_policy::trust::Trust;
use mail_auth::MessageAuthenticator;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a delivery that has a cached policy waits for a new one being fetched.
pub const FRESH_POLICY_WAIT: Duration = Duration::from_secs(5);
/// After a failed fetch, the same policy id is not fetched again for this long (3.3).
pub const FETCH_BACKOFF_SECS: i64 = 300;
/// A policy is refreshed when this much of its max_age has passed, at most a day after its
/// fetch.
const REFRESH_AFTER_MAX: i64 = 86_400;
/// Policies not used for this long are left to expire instead of being refreshed.
const REFRESH_IF_USED_WITHIN: i64 = 30 * 86_400;

/// What fetching needs: the resolver and whom to trust (from the live configuration).
#[derive(Clone)]
pub struct Fetcher {
    pub resolver: MessageAuthenticator,
    pub trust: Trust,
    pub limits: Limits,
}

impl Fetcher {
    /// With the limits of RFC 8461 3.3 ([`fetch::LIMITS`]).
    pub fn new(resolver: MessageAuthenticator, trust: Trust) -> Fetcher {
        Fetcher {
            resolver,
            trust,
            limits: fetch::LIMITS,
        }
    }
}

/// A policy in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The TXT record id it was fetched under.
    pub id: String,
    pub policy: Arc<StsPolicy>,
    /// When it was fetched (seconds since the epoch).
    pub fetched: i64,
}

impl Cached {
    pub fn expires(&self) -> i64 {
        self.fetched + i64::from(self.policy.max_age)
    }

    fn refresh_at(&self) -> i64 {
        self.fetched + (i64::from(self.policy.max_age) / 2).min(REFRESH_AFTER_MAX)
    }
}

/// What a delivery learns about a domain's policy.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// This policy is in force (its mode may be `none`). `fetch_failed`: a newer policy was
    /// announced but could not be fetched.
    Policy {
        cached: Cached,
        fetch_failed: Option<FetchError>,
    },
    /// No policy is known. `fetch_failed`: one was announced but could not be fetched (a TLS
    /// report tells the domain); `reason` says why for the logs.
    None {
        reason: String,
        fetch_failed: Option<FetchError>,
    },
}

/// The file form of a cached policy.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    domain: String,
    id: String,
    fetched: i64,
    policy: String,
}

type FetchResult = Option<Result<Cached, FetchError>>;

struct Entry {
    cached: Cached,
    last_used: i64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Domain -> the fetch running for it.
    inflight: HashMap<String, watch::Receiver<FetchResult>>,
    /// (domain, id) -> no new fetch before this time.
    backoff: HashMap<(String, String), i64>,
}

/// The cache. Shared by every delivery (and kept across configuration reloads).
pub struct StsCache {
    dir: PathBuf,
    state: Mutex<State>,
}

impl StsCache {
    /// Open the cache of the spool at `spool_dir`: make its directory, load every policy that
    /// has not expired, delete the ones that have (and files that do not parse).
    pub fn open(spool_dir: &Path, now: i64) -> std::io::Result<StsCache> {
        let dir = spool_dir.join("mta-sts");
        std::fs::create_dir_all(&dir)?;
        let mut state = State::default();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let loaded = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<OnDisk>(&b).ok())
                .and_then(|d| {
                    let policy = StsPolicy::parse(&d.policy).ok()?;
                    let cached = Cached {
                        id: d.id,
                        policy: Arc::new(policy),
                        fetched: d.fetched,
                    };
                    Some((d.domain, cached))
                });
            match loaded {
                Some((domain, cached)) if cached.expires() > now => {
                    let last_used = cached.fetched;
                    state.entries.insert(domain, Entry { cached, last_used });
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(StsCache {
            dir,
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The unexpired cached policy of `domain`, marked as used.
    pub fn cached(&self, domain: &str, now: i64) -> Option<Cached> {
        let mut state = self.state();
        let entry = state.entries.get_mut(domain)?;
        if entry.cached.expires() <= now {
            return None;
        }
        entry.last_used = now;
        Some(entry.cached.clone())
    }

    /// The policy in force for `domain` (ASCII, lower case) now.
    pub async fn lookup(self: &Arc<Self>, fetcher: &Fetcher, domain: &str, now: i64) -> Lookup {
        let discovery = record::discover(&fetcher.resolver, domain).await;
        let cached = self.cached(domain, now);
        let record = match (discovery, cached) {
            (Discovery::Record(r), Some(c)) if r.id == c.id => {
                if now >= c.refresh_at() {
                    // Keep it from expiring while it is in use; this delivery does not wait.
                    drop(self.fetch_shared(fetcher, domain, &r.id, now));
                }
                return Lookup::Policy {
                    cached: c,
                    fetch_failed: None,
                };
            }
            // 3.1: a record gone or unanswered does not void a cached policy.
            (Discovery::Absent(_) | Discovery::Failed(_), Some(c)) => {
                return Lookup::Policy {
                    cached: c,
                    fetch_failed: None,
                }
            }
            (Discovery::Absent(reason) | Discovery::Failed(reason), None) => {
                return Lookup::None {
                    reason,
                    fetch_failed: None,
                }
            }
            (Discovery::Record(r), _) => r,
        };
        // A policy not seen before, or a new version of the cached one.
        let cached = self.cached(domain, now);
        let wait = match &cached {
            Some(_) => FRESH_POLICY_WAIT,
            // Bounded by the fetch's own deadline; the margin only covers scheduling.
            None => fetcher.limits.timeout + Duration::from_secs(5),
        };
        let outcome = match self.fetch_shared(fetcher, domain, &record.id, now) {
            None => None,
            Some(mut rx) => match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
                Ok(Ok(v)) => v.clone(),
                _ => None,
            },
        };
        match (outcome, cached) {
            (Some(Ok(new)), _) => Lookup::Policy {
                cached: new,
                fetch_failed: None,
            },
            (Some(Err(e)), Some(c)) => Lookup::Policy {
                cached: c,
                fetch_failed: Some(e),
            },
            (Some(Err(e)), None) => Lookup::None {
                reason: e.message.clone(),
                fetch_failed: Some(e),
            },
            // Still fetching (or backing off after a failure): the cached policy meanwhile.
            (None, Some(c)) => Lookup::Policy {
                cached: c,
                fetch_failed: None,
            },
            (None, None) => Lookup::None {
                reason: format!(
                    "the policy of {domain} (id {}) could not be fetched recently; next try after a pause",
                    record.id
                ),
                fetch_failed: None,
            },
        }
    }

    /// The fetch of `domain`'s policy: joined when one is running, else started (unless `id`
    /// failed within the back-off). It runs on its own task, so it completes and fills the
    /// cache even when nobody waits for it any more.
    fn fetch_shared(
        self: &Arc<Self>,
        fetcher: &Fetcher,
        domain: &str,
        id: &str,
        now: i64,
    ) -> Option<watch::Receiver<FetchResult>> {
        let mut state = self.state();
        if let Some(rx) = state.inflight.get(domain) {
            return Some(rx.clone());
        }
        let key = (domain.to_string(), id.to_string());
        if state.backoff.get(&key).is_some_and(|until| now < *until) {
            return None;
        }
        state.backoff.retain(|_, until| now < *until);
        let (tx, rx) = watch::channel(None);
        state.inflight.insert(domain.to_string(), rx.clone());
        drop(state);
        let cache = self.clone();
        let fetcher = fetcher.clone();
        let (domain, id) = key;
        tokio::spawn(async move {
            let result =
                fetch::fetch(&fetcher.resolver, &fetcher.trust, &domain, fetcher.limits).await;
            let fetched = crate::tls_policy::unix_now().max(now);
            let result = match result {
                Ok(policy) => {
                    tracing::info!(domain = %domain, id = %id, mode = policy.mode.as_str(), max_age = policy.max_age, mx = %policy.mx_hosts().join(" "), "MTA-STS policy fetched");
                    let cached = Cached {
                        id: id.clone(),
                        policy: Arc::new(policy),
                        fetched,
                    };
                    cache.store(&domain, &cached, fetched);
                    Ok(cached)
                }
                Err(e) => {
                    tracing::warn!(domain = %domain, id = %id, result = e.result.as_str(), error = %e, "MTA-STS policy fetch failed");
                    Err(e)
                }
            };
            let mut state = cache.state();
            if result.is_err() {
                state
                    .backoff
                    .insert((domain.clone(), id), fetched + FETCH_BACKOFF_SECS);
            }
            state.inflight.remove(&domain);
            drop(state);
            let _ = tx.send(Some(result));
        });
        Some(rx)
    }

    /// Keep `cached` for `domain`, in memory and on disk.
    fn store(&self, domain: &str, cached: &Cached, now: i64) {
        let disk = OnDisk {
            domain: domain.to_string(),
            id: cached.id.clone(),
            fetched: cached.fetched,
            policy: cached.policy.text.clone(),
        };
        let path = self.dir.join(format!("{domain}.json"));
        let tmp = self.dir.join(format!(".{domain}.json.tmp"));
        let written = serde_json::to_vec(&disk)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            // The policy still applies from memory; only a restart would forget it.
            tracing::warn!(domain = %domain, error = %e, "cannot save the MTA-STS policy in the spool");
        }
        let mut state = self.state();
        let last_used = state.entries.get(domain).map_or(now, |e| e.last_used);
        state.entries.insert(
            domain.to_string(),
            Entry {
                cached: cached.clone(),
                last_used,
            },
        );
    }

    fn forget(&self, domain: &str) {
        self.state().entries.remove(domain);
        let _ = std::fs::remove_file(self.dir.join(format!("{domain}.json")));
    }

    /// One round of upkeep: drop expired policies; refresh the ones in use whose refresh time
    /// has come (a new fetch, whatever the TXT id, since a policy's max_age counts from its
    /// fetch); drop `none` policies whose TXT record is gone (the domain left MTA-STS).
    /// Returns how many fetches it started.
    pub async fn refresh_due(self: &Arc<Self>, fetcher: &Fetcher, now: i64) -> usize {
        let (expired, due): (Vec<String>, Vec<(String, Cached)>) = {
            let state = self.state();
            let expired = state
                .entries
                .iter()
                .filter(|(_, e)| e.cached.expires() <= now)
                .map(|(d, _)| d.clone())
                .collect();
            let due = state
                .entries
                .iter()
                .filter(|(_, e)| {
                    e.cached.expires() > now
                        && now >= e.cached.refresh_at()
                        && now - e.last_used < REFRESH_IF_USED_WITHIN
                })
                .map(|(d, e)| (d.clone(), e.cached.clone()))
                .collect();
            (expired, due)
        };
        for domain in expired {
            self.forget(&domain);
        }
        let mut started = 0;
        for (domain, cached) in due {
            match record::discover(&fetcher.resolver, &domain).await {
                Discovery::Record(r) => {
                    if self.fetch_shared(fetcher, &domain, &r.id, now).is_some() {
                        started += 1;
                    }
                }
                Discovery::Absent(_) if cached.policy.mode == StsMode::None => {
                    self.forget(&domain);
                }
                // Nothing to fetch now; the policy stays until it expires.
                Discovery::Absent(_) | Discovery::Failed(_) => {}
            }
        }
        started
    }

    /// Run [`refresh_due`](Self::refresh_due) every `interval` until `shutdown` turns true;
    /// `fetcher` gives the live configuration's resolver and trust each round.
    pub async fn run(
        self: Arc<Self>,
        fetcher: impl Fn() -> Option<Fetcher>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Some(f) = fetcher() {
                self.refresh_due(&f, crate::tls_policy::unix_now()).await;
            }
        }
    }
}

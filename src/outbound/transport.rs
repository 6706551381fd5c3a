//! The seam between the queue and the network: a `Transport` takes a parcel (one message for
//! the recipients of one destination) and answers with an outcome per recipient, each
//! delivered, temporary, permanent, or held (not attempted: its hosts are closed). The queue
//! schedules; everything about where mail goes and how is here.
//!
//! `MailTransport` is the relay's: it reads the delivery mode from the live configuration at
//! each delivery (`mode: mx` resolves the next hops, `relay_host` has one, `directory` writes
//! files), and owns the connection pool and the circuit breaker, which it reconfigures when a
//! reload changed the limits. For MX delivery it looks up the recipient domain's transport
//! security policy (MTA-STS, `tls_policy`) before the courier goes (a `routes` entry is the
//! operator's choice of next hop and bypasses it), and with `delivery.dane` resolves the MX
//! hosts through the DNSSEC-aware resolver, so that each host's TLSA records can count
//! (`host`). Must not import `queue` or `spool`.

use super::breaker::Breaker;
use super::connection::Policy;
use super::courier::{Courier, Security};
use super::host;
use super::next_hop::{self, Hop, HopError};
use super::pool::Pool;
use super::secure_hop;
use super::{directory, Message, Outcome, Parcel};
use crate::config::DeliveryMode;
use crate::core::Core;
use crate::tls_policy::mta_sts::{Fetcher, StsCache};
use crate::tls_policy::report::store::Store;
use crate::tls_policy::{DomainPolicy, Recorder};
use arc_swap::ArcSwap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A delivery under way.
pub type Delivering<'a> = Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'a>>;

/// Hands parcels over (chasquid's `Courier`: deliver, get per-recipient outcomes).
pub trait Transport: Send + Sync {
    /// Where mail for `recipient` goes. Recipients of one message with the same destination
    /// travel in one parcel; a destination is also what connection limits count by.
    fn destination(&self, recipient: &str) -> String;

    /// As many deliveries already wait for `destination` as it may have connections: one more
    /// would only wait too (the scheduler parks it instead of holding a delivery slot).
    fn crowded(&self, destination: &str) -> bool;

    /// Deliver `parcel`, whose recipients share one destination: one outcome per recipient,
    /// in order.
    fn deliver<'a>(&'a self, parcel: &'a Parcel<'a>) -> Delivering<'a>;

    /// Upkeep until shutdown (closing idle connections). Nothing by default.
    fn maintain(
        self: Arc<Self>,
        _shutdown: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

/// The relay's transport: MX, relay host or directory, as the live configuration says.
pub struct MailTransport {
    live: Arc<ArcSwap<Core>>,
    metrics: Arc<crate::metrics::Metrics>,
    pool: Arc<Pool>,
    breaker: Arc<Breaker>,
    /// The configuration the pool's and breaker's settings come from; a reload is noticed by
    /// comparing.
    applied: Mutex<Arc<Core>>,
    /// MTA-STS policies and TLS report results (`None`: not set up, as in unit tests).
    policies: Option<Policies>,
}

/// What outlives a configuration: the MTA-STS policy cache and the TLS-RPT store, both in the
/// spool.
#[derive(Clone)]
pub struct Policies {
    pub sts: Arc<StsCache>,
    pub store: Arc<Store>,
}

impl MailTransport {
    pub fn new(
        live: Arc<ArcSwap<Core>>,
        metrics: Arc<crate::metrics::Metrics>,
        breaker: Arc<Breaker>,
    ) -> MailTransport {
        let core = live.load_full();
        let d = &core.settings.delivery;
        let pool = Arc::new(Pool::new(d.max_connections, d.max_connections_per_domain));
        MailTransport {
            live,
            metrics,
            pool,
            breaker,
            applied: Mutex::new(core),
            policies: None,
        }
    }

    /// Honour recipients' transport security policies (as `delivery.mta_sts` says) and
    /// record every MX session for TLS reports (when `delivery.tls_reports` is on).
    pub fn with_policies(mut self, policies: Policies) -> MailTransport {
        self.policies = Some(policies);
        self
    }

    /// The transport security of a delivery to `domain` now: `None` without policies set up,
    /// for a routed domain, or outside MX delivery.
    async fn domain_policy(&self, core: &Core, domain: &str) -> Option<DomainPolicy> {
        let policies = self.policies.as_ref()?;
        let d = &core.settings.delivery;
        if d.routes.contains_key(domain) {
            return None;
        }
        Some(match &core.trust {
            Some(trust) => {
                let fetcher = Fetcher::new(core.resolver.clone(), trust.clone());
                DomainPolicy::lookup(
                    &policies.sts,
                    &fetcher,
                    d.security.mta_sts,
                    domain,
                    crate::clock::unix_now(),
                )
                .await
            }
            None => DomainPolicy::none(domain),
        })
    }

    /// A reload happened since the last delivery: the pool takes the new limits and drops the
    /// idle connections made under the old configuration; the breaker takes the new schedule
    /// and opens every host (the next hops may be others now).
    fn follow_reload(&self, core: &Arc<Core>) {
        let Ok(mut applied) = self.applied.lock() else {
            return;
        };
        if !Arc::ptr_eq(&applied, core) {
            let d = &core.settings.delivery;
            self.pool
                .reconfigure(d.max_connections, d.max_connections_per_domain);
            self.breaker.configure(d.retry.clone(), d.host_retry_max);
            self.breaker.reopen_all();
            *applied = core.clone();
        }
    }

    async fn deliver_now(&self, parcel: &Parcel<'_>) -> Vec<Outcome> {
        let core = self.live.load_full();
        self.follow_reload(&core);
        let d = &core.settings.delivery;
        // Recomputed with this configuration: a reload may have changed the mode since the
        // parcel was put together.
        let destination = parcel
            .recipients
            .first()
            .map(|r| destination(d, r))
            .unwrap_or_default();
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            store: self
                .policies
                .as_ref()
                .filter(|_| d.security.tls_reports.enabled)
                .map(|p| p.store.clone()),
        };
        let domain_policy = match d.mode {
            DeliveryMode::Mx => self.domain_policy(&core, &destination).await,
            _ => None,
        };
        let security = domain_policy.as_ref().map(|domain| Security {
            domain,
            trust: core.trust.as_ref(),
            recorder: &recorder,
            dane: None,
        });
        let courier = |policy, security| Courier {
            resolver: &core.resolver,
            pool: &self.pool,
            breaker: &self.breaker,
            policy,
            tls_failures: Some(
                self.metrics
                    .tls_failures_total
                    .with_label_values(&["outbound"]),
            ),
            unannounced_8bit: Some(self.metrics.eight_bit_without_8bitmime_total.clone()),
            security,
        };
        match &d.mode {
            DeliveryMode::Directory(dir) => deliver_to_directory(dir, parcel).await,
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
                courier(&policy, None)
                    .deliver(&destination, &[hop], parcel)
                    .await
            }
            DeliveryMode::Mx => {
                // DANE: the MX answer through the DNSSEC-aware resolver, its security kept
                // for each host's TLSA decision (a routed domain has no DNS to trust).
                let dane_resolver = core
                    .dnssec
                    .as_ref()
                    .filter(|_| d.dane == crate::config::Dane::On && security.is_some());
                let resolved = match dane_resolver {
                    Some(resolver) => secure_hop::resolve(resolver, &destination, d.port)
                        .await
                        .map(|h| (h.hops, Some(host::Dane { resolver, mx: h.mx }))),
                    None => next_hop::resolve(&core.resolver, &d.routes, &destination, d.port)
                        .await
                        .map(|h| (h, None)),
                };
                let (hops, dane) = match resolved {
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
                let security = security.map(|s| Security { dane, ..s });
                courier(&policy, security)
                    .deliver(&destination, &hops, parcel)
                    .await
            }
        }
    }
}

impl Transport for MailTransport {
    fn destination(&self, recipient: &str) -> String {
        destination(&self.live.load().settings.delivery, recipient)
    }

    fn crowded(&self, destination: &str) -> bool {
        self.pool.crowded(destination)
    }

    fn deliver<'a>(&'a self, parcel: &'a Parcel<'a>) -> Delivering<'a> {
        Box::pin(self.deliver_now(parcel))
    }

    fn maintain(
        self: Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.pool.clone().reap(shutdown))
    }
}

/// The destination of a recipient under a configuration: its domain (MX), the relay host
/// (`host:port`), or the directory (which has no connections to count).
pub fn destination(delivery: &crate::config::Delivery, recipient: &str) -> String {
    match &delivery.mode {
        DeliveryMode::Mx => crate::smtp::address::domain_of(recipient).unwrap_or_default(),
        DeliveryMode::RelayHost(r) => format!("{}:{}", r.host, r.port),
        DeliveryMode::Directory(_) => String::new(),
    }
}

/// Local file writes and an fsync: kept off the async workers' backs.
async fn deliver_to_directory(dir: &std::path::Path, parcel: &Parcel<'_>) -> Vec<Outcome> {
    let dir = dir.to_path_buf();
    let queue_id = parcel.queue_id.to_string();
    let sender = parcel.sender.to_string();
    let recipients: Vec<String> = parcel.recipients.iter().map(|r| r.to_string()).collect();
    let signatures = parcel.signatures.to_vec();
    let message = match parcel.message {
        Message::File { path, len } => Ok((path.to_path_buf(), len)),
        Message::InMemory(bytes) => Err(bytes.to_vec()),
    };
    let written = tokio::task::spawn_blocking(move || {
        let owned = Parcel {
            queue_id: &queue_id,
            sender: &sender,
            recipients: recipients.iter().map(String::as_str).collect(),
            signatures: &signatures,
            message: match &message {
                Ok((path, len)) => Message::File { path, len: *len },
                Err(bytes) => Message::InMemory(bytes),
            },
            eight_bit: false,
            smtputf8: false,
            tls_optional: false,
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

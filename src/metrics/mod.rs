//! Every metric the relay exports, declared once with its help text, in a registry of its own
//! (never prometheus' global default registry), plus the HTTP endpoint that serves them
//! ([`http`]: `/metrics`, `/healthz`, `/readyz`). The `bounce-check` daemon, a process of its
//! own, has its own small set in [`bounce_check`].
//!
//! The rest of the relay updates the public fields of [`Metrics`] directly (they are cheap,
//! lock-free handles), or through the typed helpers below, which keep label values inside their
//! fixed sets ([`RejectReason`], [`Algorithm`], [`AuthMechanism`], [`DeliveryResult`],
//! [`Direction`], ...: `labels.rs`). Labels only ever come from such fixed sets or from the
//! configuration (listener names, signing domains, selectors) — never from client input such as
//! a recipient.
//!
//! This module imports nothing else of ours.

pub(crate) mod bounce_check;
pub mod http;
mod labels;

pub use http::{serve, serve_with_status, Page, Readiness, StatusPage};
pub use labels::{
    Algorithm, AuthMechanism, ClusterLimit, DeliveryResult, Direction, OverloadReason, ProbeResult,
    ReencodeReason, RejectReason, TlsPolicy,
};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Prefix of every metric name.
pub const NAMESPACE: &str = "dkim_relay";

/// Content type of the text exposition format served on `/metrics`.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// `n` buckets from `start`, each `factor` times the previous (prometheus' `exponential_buckets`
/// without its `Result`, since our arguments are constants).
fn exp_buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * factor))
        .take(n)
        .collect()
}

/// Every metric of the relay. Cheap to share behind an `Arc`; each field is a lock-free handle.
///
/// Names below are without the `dkim_relay_` prefix.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `connections_total{listener}`: accepted connections per listener (label: the listener's
    /// configured address or unix path).
    pub connections_total: IntCounterVec,
    /// `sessions_active`: open SMTP sessions.
    pub sessions_active: IntGauge,
    /// `auth_failures_total{mechanism}`: failed SMTP AUTH attempts (`plain`, `login`).
    pub auth_failures_total: IntCounterVec,
    /// `messages_received_total`: messages whose data was received completely (before checks).
    pub messages_received_total: IntCounter,
    /// `messages_rejected_total{reason}`: messages refused, by [`RejectReason`].
    pub messages_rejected_total: IntCounterVec,
    /// `messages_signed_total{domain,algorithm}`: signatures made (one per selector).
    pub messages_signed_total: IntCounterVec,
    /// `signing_seconds`: time to sign one message (all selectors), including self-verification.
    pub signing_seconds: Histogram,
    /// `message_size_bytes`: size of received messages.
    pub message_size_bytes: Histogram,
    /// `deliveries_total{result}`: per-recipient delivery outcomes ([`DeliveryResult`]).
    pub deliveries_total: IntCounterVec,
    /// `delivery_seconds`: duration of one delivery transaction to a next hop.
    pub delivery_seconds: Histogram,
    /// `queue_messages`: messages in the spool (not recipients).
    pub queue_messages: IntGauge,
    /// `queue_oldest_age_seconds`: age of the oldest message in the spool (0 when empty).
    pub queue_oldest_age_seconds: Gauge,
    /// `tls_failures_total{direction}`: failed TLS handshakes ([`Direction`]).
    pub tls_failures_total: IntCounterVec,
    /// `dns_failures_total`: DNS lookups that failed temporarily (SERVFAIL, timeout).
    pub dns_failures_total: IntCounter,
    /// `dns_check_ok{domain,check}`: 1 when the DNS doctor's last run found the check passing.
    /// Deliberately not pre-initialised (a 0 before the first run would page someone); on a
    /// reload that drops a domain, `reset()` it before the next run.
    pub dns_check_ok: IntGaugeVec,
    /// `self_verify_failures_total`: new signatures that failed verification before the 250.
    pub self_verify_failures_total: IntCounter,
    /// `config_reloads_total{result}`: SIGHUP reloads, `success` or `failure`.
    pub config_reloads_total: IntCounterVec,
    /// `build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `tls_policy_total{policy,result}`: outbound sessions to MX hosts by the policy they
    /// were under ([`TlsPolicy`]) and whether they met it (`ok`, `failed`).
    pub tls_policy_total: IntCounterVec,
    /// `auth_hash_waiting`: AUTH attempts waiting for a password-check slot (or for their
    /// address's turn).
    pub auth_hash_waiting: IntGauge,
    /// `buffer_memory_bytes`: bytes clients hold in the relay's buffers before spooling
    /// (counted against `limits.buffer_memory`).
    pub buffer_memory_bytes: IntGauge,
    /// `overload_refusals_total{reason}`: requests refused to keep memory and CPU bounded,
    /// by [`OverloadReason`].
    pub overload_refusals_total: IntCounterVec,
    /// `cluster_redis_up`: 1 while the Redis of `cluster.redis` answers, else 0 (always 0
    /// without `cluster.redis`).
    pub cluster_redis_up: IntGauge,
    /// `cluster_decisions_total{limit,outcome}`: decisions of the shared limits, by
    /// [`ClusterLimit`] and outcome (`allowed`, `refused`, `unavailable`: Redis could not
    /// decide and `cluster.on_redis_down` applied).
    pub cluster_decisions_total: IntCounterVec,
    /// `cluster_redis_seconds`: time Redis took to answer one shared decision.
    pub cluster_redis_seconds: Histogram,
    /// `next_hop_closed`: next-hop hosts closed by the circuit breaker right now.
    pub next_hop_closed: IntGauge,
    /// `delivery_probes_total{result}`: probe deliveries to closed hosts ([`ProbeResult`]).
    pub delivery_probes_total: IntCounterVec,
    /// `messages_reencoded_total{reason}`: bodies re-encoded before signing, by
    /// [`ReencodeReason`] (a message re-encoded for both counts under each).
    pub messages_reencoded_total: IntCounterVec,
    /// `8bit_without_8bitmime_total`: messages with 8-bit data sent to a next hop that does
    /// not offer 8BITMIME (`limits.eight_bit: keep`).
    pub eight_bit_without_8bitmime_total: IntCounter,
}

/// Building the metric set failed. Only possible through a programming error (an invalid or
/// duplicated name), which the unit tests rule out.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the metric set: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Build and register every metric in a fresh registry, with fixed label sets
    /// pre-initialised to zero so dashboards and alerts see them from the start.
    pub fn new() -> Metrics {
        // The names, labels and buckets are constants and the registry is fresh, so this cannot
        // fail at runtime; `tests::new_does_not_fail` proves it for every build.
        Self::try_new().expect("metric definitions are constant and valid")
    }

    /// [`Metrics::new`], returning the error instead of panicking.
    pub fn try_new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let hopts = |name: &str, help: &str, buckets: Vec<f64>| {
            HistogramOpts::new(name, help)
                .namespace(NAMESPACE)
                .buckets(buckets)
        };

        let m = Metrics {
            connections_total: IntCounterVec::new(
                opts("connections_total", "Connections accepted, by listener."),
                &["listener"],
            )?,
            sessions_active: IntGauge::with_opts(opts(
                "sessions_active",
                "SMTP sessions currently open.",
            ))?,
            auth_failures_total: IntCounterVec::new(
                opts(
                    "auth_failures_total",
                    "Failed SMTP AUTH attempts, by mechanism.",
                ),
                &["mechanism"],
            )?,
            messages_received_total: IntCounter::with_opts(opts(
                "messages_received_total",
                "Messages whose data was received completely, before policy checks.",
            ))?,
            messages_rejected_total: IntCounterVec::new(
                opts("messages_rejected_total", "Messages refused, by reason."),
                &["reason"],
            )?,
            messages_signed_total: IntCounterVec::new(
                opts(
                    "messages_signed_total",
                    "DKIM signatures added, by signing domain and algorithm.",
                ),
                &["domain", "algorithm"],
            )?,
            // 50 µs .. ~100 ms: Ed25519 signs a small message in ~10 µs, RSA-2048 in ~250 µs,
            // a large relaxed body adds ~0.7 ms/MiB.
            signing_seconds: Histogram::with_opts(hopts(
                "signing_seconds",
                "Time to DKIM-sign and self-verify one message, in seconds.",
                exp_buckets(0.000_05, 2.0, 12),
            ))?,
            // 1 KiB .. 64 MiB, by factors of 4.
            message_size_bytes: Histogram::with_opts(hopts(
                "message_size_bytes",
                "Size of received messages, in bytes.",
                exp_buckets(1024.0, 4.0, 9),
            ))?,
            deliveries_total: IntCounterVec::new(
                opts(
                    "deliveries_total",
                    "Per-recipient delivery outcomes: delivered, deferred or bounced.",
                ),
                &["result"],
            )?,
            delivery_seconds: Histogram::with_opts(hopts(
                "delivery_seconds",
                "Duration of one delivery transaction to a next hop, in seconds.",
                vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ],
            ))?,
            queue_messages: IntGauge::with_opts(opts(
                "queue_messages",
                "Messages in the queue (not recipients).",
            ))?,
            queue_oldest_age_seconds: Gauge::with_opts(opts(
                "queue_oldest_age_seconds",
                "Age of the oldest queued message in seconds, 0 when the queue is empty.",
            ))?,
            tls_failures_total: IntCounterVec::new(
                opts(
                    "tls_failures_total",
                    "Failed TLS handshakes, inbound (clients) or outbound (next hops).",
                ),
                &["direction"],
            )?,
            dns_failures_total: IntCounter::with_opts(opts(
                "dns_failures_total",
                "DNS lookups that failed temporarily (timeout, SERVFAIL).",
            ))?,
            dns_check_ok: IntGaugeVec::new(
                opts(
                    "dns_check_ok",
                    "1 when the last DNS check (dkim, spf, dmarc) of a domain passed, else 0.",
                ),
                &["domain", "check"],
            )?,
            self_verify_failures_total: IntCounter::with_opts(opts(
                "self_verify_failures_total",
                "New DKIM signatures that failed verification before acceptance.",
            ))?,
            config_reloads_total: IntCounterVec::new(
                opts(
                    "config_reloads_total",
                    "Configuration reloads, by result (success, failure).",
                ),
                &["result"],
            )?,
            build_info: IntGaugeVec::new(
                opts("build_info", "Build information; the value is always 1."),
                &["version"],
            )?,
            tls_policy_total: IntCounterVec::new(
                opts(
                    "tls_policy_total",
                    "Outbound sessions to MX hosts, by transport security policy (mta-sts, dane, none) and result (ok, failed).",
                ),
                &["policy", "result"],
            )?,
            auth_hash_waiting: IntGauge::with_opts(opts(
                "auth_hash_waiting",
                "AUTH attempts waiting for a password-check slot.",
            ))?,
            buffer_memory_bytes: IntGauge::with_opts(opts(
                "buffer_memory_bytes",
                "Bytes clients hold in buffers before spooling (limit: limits.buffer_memory).",
            ))?,
            overload_refusals_total: IntCounterVec::new(
                opts(
                    "overload_refusals_total",
                    "Requests refused to keep the relay bounded, by reason (auth_hash_busy, buffer_memory).",
                ),
                &["reason"],
            )?,
            cluster_redis_up: IntGauge::with_opts(opts(
                "cluster_redis_up",
                "1 while the Redis shared by the replicas (cluster.redis) answers, else 0.",
            ))?,
            cluster_decisions_total: IntCounterVec::new(
                opts(
                    "cluster_decisions_total",
                    "Decisions of the limits shared through Redis, by limit and outcome (allowed, refused, unavailable).",
                ),
                &["limit", "outcome"],
            )?,
            // 100 µs .. ~200 ms: loopback answers in ~0.1 ms, a decision's budget is a few ms.
            cluster_redis_seconds: Histogram::with_opts(hopts(
                "cluster_redis_seconds",
                "Time Redis took to answer one shared-limit decision, in seconds.",
                exp_buckets(0.000_1, 2.0, 12),
            ))?,
            next_hop_closed: IntGauge::with_opts(opts(
                "next_hop_closed",
                "Next-hop hosts (address and port) closed after a failure, waiting for a probe.",
            ))?,
            delivery_probes_total: IntCounterVec::new(
                opts(
                    "delivery_probes_total",
                    "Probe deliveries to closed next-hop hosts, by result (success, failure).",
                ),
                &["result"],
            )?,
            messages_reencoded_total: IntCounterVec::new(
                opts(
                    "messages_reencoded_total",
                    "Message bodies re-encoded as quoted-printable before signing, by reason (long_lines, eight_bit).",
                ),
                &["reason"],
            )?,
            eight_bit_without_8bitmime_total: IntCounter::with_opts(opts(
                "8bit_without_8bitmime_total",
                "Messages with 8-bit data sent to a next hop that does not offer 8BITMIME.",
            ))?,
            registry,
        };

        let collectors: [Box<dyn Collector>; 18] = [
            Box::new(m.connections_total.clone()),
            Box::new(m.sessions_active.clone()),
            Box::new(m.auth_failures_total.clone()),
            Box::new(m.messages_received_total.clone()),
            Box::new(m.messages_rejected_total.clone()),
            Box::new(m.messages_signed_total.clone()),
            Box::new(m.signing_seconds.clone()),
            Box::new(m.message_size_bytes.clone()),
            Box::new(m.deliveries_total.clone()),
            Box::new(m.delivery_seconds.clone()),
            Box::new(m.queue_messages.clone()),
            Box::new(m.queue_oldest_age_seconds.clone()),
            Box::new(m.tls_failures_total.clone()),
            Box::new(m.dns_failures_total.clone()),
            Box::new(m.dns_check_ok.clone()),
            Box::new(m.self_verify_failures_total.clone()),
            Box::new(m.config_reloads_total.clone()),
            Box::new(m.build_info.clone()),
        ];
        for c in collectors {
            m.registry.register(c)?;
        }
        m.registry.register(Box::new(m.tls_policy_total.clone()))?;
        let load: [Box<dyn Collector>; 3] = [
            Box::new(m.auth_hash_waiting.clone()),
            Box::new(m.buffer_memory_bytes.clone()),
            Box::new(m.overload_refusals_total.clone()),
        ];
        for c in load {
            m.registry.register(c)?;
        }
        for r in OverloadReason::ALL {
            m.overload_refusals_total.with_label_values(&[r.as_str()]);
        }
        let cluster: [Box<dyn Collector>; 3] = [
            Box::new(m.cluster_redis_up.clone()),
            Box::new(m.cluster_decisions_total.clone()),
            Box::new(m.cluster_redis_seconds.clone()),
        ];
        for c in cluster {
            m.registry.register(c)?;
        }
        for l in ClusterLimit::ALL {
            for o in ["allowed", "refused", "unavailable"] {
                m.cluster_decisions_total
                    .with_label_values(&[l.as_str(), o]);
            }
        }
        m.registry.register(Box::new(m.next_hop_closed.clone()))?;
        m.registry
            .register(Box::new(m.delivery_probes_total.clone()))?;
        for r in ProbeResult::ALL {
            m.delivery_probes_total.with_label_values(&[r.as_str()]);
        }
        m.registry
            .register(Box::new(m.messages_reencoded_total.clone()))?;
        m.registry
            .register(Box::new(m.eight_bit_without_8bitmime_total.clone()))?;
        for r in ReencodeReason::ALL {
            m.messages_reencoded_total.with_label_values(&[r.as_str()]);
        }

        // Pre-initialise fixed label sets: a series that does not exist yet is invisible to
        // rate() and to alerts, a zero is not.
        for r in AuthMechanism::ALL {
            m.auth_failures_total.with_label_values(&[r.as_str()]);
        }
        for r in RejectReason::ALL {
            m.messages_rejected_total.with_label_values(&[r.as_str()]);
        }
        for r in DeliveryResult::ALL {
            m.deliveries_total.with_label_values(&[r.as_str()]);
        }
        for d in Direction::ALL {
            m.tls_failures_total.with_label_values(&[d.as_str()]);
        }
        for r in ["success", "failure"] {
            m.config_reloads_total.with_label_values(&[r]);
        }
        for p in TlsPolicy::ALL {
            for r in ["ok", "failed"] {
                m.tls_policy_total.with_label_values(&[p.as_str(), r]);
            }
        }
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(m)
    }

    /// Everything in the text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which our fixed
        // definitions never produce; a failed scrape must not take the relay down, so log it.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Pre-initialise the per-listener and per-domain series of the configuration, so they
    /// show 0 before the first event (a labelled family with no series is not exported at all,
    /// not even its HELP line). Call at start and after each reload. `domains` pairs a
    /// signing domain with the algorithms of its selectors.
    pub fn init_config_labels<'a>(
        &self,
        listeners: impl IntoIterator<Item = &'a str>,
        domains: impl IntoIterator<Item = (&'a str, Algorithm)>,
    ) {
        for l in listeners {
            self.connections_total.with_label_values(&[l]);
        }
        for (domain, alg) in domains {
            self.messages_signed_total
                .with_label_values(&[domain, alg.as_str()]);
        }
    }

    /// Count a connection accepted on `listener`.
    pub fn connection(&self, listener: &str) {
        self.connections_total.with_label_values(&[listener]).inc();
    }

    /// Count a failed AUTH.
    pub fn auth_failure(&self, mechanism: AuthMechanism) {
        self.auth_failures_total
            .with_label_values(&[mechanism.as_str()])
            .inc();
    }

    /// Count a message re-encoded before signing.
    pub fn reencoded(&self, reason: ReencodeReason) {
        self.messages_reencoded_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Count a refused message.
    pub fn rejected(&self, reason: RejectReason) {
        self.messages_rejected_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Count one signature of `domain` (the `d=` tag) with `algorithm`.
    pub fn signed(&self, domain: &str, algorithm: Algorithm) {
        self.messages_signed_total
            .with_label_values(&[domain, algorithm.as_str()])
            .inc();
    }

    /// Count `n` recipients with the same delivery outcome.
    pub fn deliveries(&self, result: DeliveryResult, n: u64) {
        self.deliveries_total
            .with_label_values(&[result.as_str()])
            .inc_by(n);
    }

    /// Count a probe of a closed next-hop host.
    pub fn probe(&self, result: ProbeResult) {
        self.delivery_probes_total
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// Count a failed TLS handshake.
    pub fn tls_failure(&self, direction: Direction) {
        self.tls_failures_total
            .with_label_values(&[direction.as_str()])
            .inc();
    }

    /// Replace the DNS doctor's gauges with one pass's values: (domain, check label, 1 when
    /// passing else 0). A reload may have removed a domain or selector: each pass starts from
    /// scratch.
    pub fn set_dns_checks(&self, values: impl IntoIterator<Item = (String, String, i64)>) {
        self.dns_check_ok.reset();
        for (domain, check, ok) in values {
            self.dns_check_ok
                .with_label_values(&[domain.as_str(), check.as_str()])
                .set(ok);
        }
    }

    /// Count an outbound session under `policy` that met it (`ok`) or not.
    pub fn tls_policy(&self, policy: TlsPolicy, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.tls_policy_total
            .with_label_values(&[policy.as_str(), result])
            .inc();
    }

    /// Count a request refused under load.
    pub fn overload_refusal(&self, reason: OverloadReason) {
        self.overload_refusals_total
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Count a decision Redis made for a shared limit.
    pub fn cluster_decision(&self, limit: ClusterLimit, allowed: bool) {
        let outcome = if allowed { "allowed" } else { "refused" };
        self.cluster_decisions_total
            .with_label_values(&[limit.as_str(), outcome])
            .inc();
    }

    /// Count a shared-limit decision Redis could not make.
    pub fn cluster_unavailable(&self, limit: ClusterLimit) {
        self.cluster_decisions_total
            .with_label_values(&[limit.as_str(), "unavailable"])
            .inc();
    }

    /// Count a configuration reload.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.config_reloads_total.with_label_values(&[result]).inc();
    }
}

/// The running totals behind the status page's "last hour" (it keeps per-minute snapshots of
/// these and subtracts): read from the counters themselves, so whatever counts them counts here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Messages accepted (250 after the data): `messages_received_total`.
    pub accepted: u64,
    /// Per-recipient outcomes: `deliveries_total{result}`.
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Messages refused, every reason: `messages_rejected_total`.
    pub rejected: u64,
}

impl Totals {
    /// What happened between `earlier` and `self` (counters only grow; a restart starts over).
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            deferred: self.deferred.saturating_sub(earlier.deferred),
            bounced: self.bounced.saturating_sub(earlier.bounced),
            rejected: self.rejected.saturating_sub(earlier.rejected),
        }
    }
}

impl Metrics {
    /// The counters behind [`Totals`], now.
    pub fn totals(&self) -> Totals {
        let delivery =
            |r: DeliveryResult| self.deliveries_total.with_label_values(&[r.as_str()]).get();
        Totals {
            accepted: self.messages_received_total.get(),
            delivered: delivery(DeliveryResult::Delivered),
            deferred: delivery(DeliveryResult::Deferred),
            bounced: delivery(DeliveryResult::Bounced),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| {
                    self.messages_rejected_total
                        .with_label_values(&[r.as_str()])
                        .get()
                })
                .sum(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;

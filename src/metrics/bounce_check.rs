//! The metrics of `dkim-relay bounce-check`, a process of its own (usually on the domain's
//! inbound MX, not on the relay): its own registry, so its `/metrics` shows what it does and
//! none of the relay's families.

use super::NAMESPACE;
use prometheus::{IntCounterVec, Opts, Registry};

/// The `verdict` label of `dkim_relay_bounce_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceVerdict {
    /// A bounce to a valid tagged address (accepted).
    Valid,
    /// A bounce to an untagged address of a tagged domain (refused).
    Untagged,
    /// A bounce to an address whose tag expired (refused).
    Expired,
    /// A bounce to an address with a tag we did not make (refused).
    BadTag,
    /// Not a bounce, or not to a tagged domain (no opinion: `DUNNO`).
    NotChecked,
    /// A bounce from `accept_bounces_from`: the relay's own DSN (`DUNNO`).
    TrustedSource,
}

impl BounceVerdict {
    pub const ALL: [BounceVerdict; 6] = [
        BounceVerdict::Valid,
        BounceVerdict::Untagged,
        BounceVerdict::Expired,
        BounceVerdict::BadTag,
        BounceVerdict::NotChecked,
        BounceVerdict::TrustedSource,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceVerdict::Valid => "valid",
            BounceVerdict::Untagged => "untagged",
            BounceVerdict::Expired => "expired",
            BounceVerdict::BadTag => "bad_tag",
            BounceVerdict::NotChecked => "not_checked",
            BounceVerdict::TrustedSource => "trusted_source",
        }
    }
}

/// Every metric of the bounce-check daemon.
#[derive(Clone)]
pub struct BounceCheckMetrics {
    registry: Registry,
    /// `bounce_checks_total{verdict}`: policy requests answered, by [`BounceVerdict`].
    pub checks_total: IntCounterVec,
    /// `config_reloads_total{result}`: SIGHUP reloads, `success` or `failure`.
    pub config_reloads_total: IntCounterVec,
}

impl BounceCheckMetrics {
    pub fn new() -> BounceCheckMetrics {
        // Constant names and labels in a fresh registry: `tests::bounce_check_metrics` proves
        // this cannot fail.
        Self::try_new().expect("metric definitions are constant and valid")
    }

    pub fn try_new() -> Result<BounceCheckMetrics, super::MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let config_reloads_total = super::daemon_metrics(&registry)?;
        let m = BounceCheckMetrics {
            checks_total: IntCounterVec::new(
                opts(
                    "bounce_checks_total",
                    "Policy requests answered by bounce-check, by verdict (valid, untagged, \
                     expired, bad_tag: bounces to a tagged domain; not_checked: anything else).",
                ),
                &["verdict"],
            )?,
            config_reloads_total,
            registry,
        };
        m.registry.register(Box::new(m.checks_total.clone()))?;
        for v in BounceVerdict::ALL {
            m.checks_total.with_label_values(&[v.as_str()]);
        }
        Ok(m)
    }

    /// Count one answered request.
    pub fn checked(&self, verdict: BounceVerdict) {
        self.checks_total
            .with_label_values(&[verdict.as_str()])
            .inc();
    }

    /// Count a configuration reload.
    pub fn config_reload(&self, ok: bool) {
        super::count_reload(&self.config_reloads_total, ok);
    }

    /// Everything in the text exposition format.
    pub fn render(&self) -> String {
        super::render(&self.registry)
    }
}

impl Default for BounceCheckMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_check_metrics() {
        let m = BounceCheckMetrics::try_new().expect("valid definitions");
        m.checked(BounceVerdict::Untagged);
        let text = m.render();
        assert!(
            text.contains("dkim_relay_bounce_checks_total{verdict=\"untagged\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dkim_relay_bounce_checks_total{verdict=\"valid\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# HELP dkim_relay_bounce_checks_total "),
            "{text}"
        );
        assert!(!text.contains("dkim_relay_sessions_active"), "{text}");
    }
}

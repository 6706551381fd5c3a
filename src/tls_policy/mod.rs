//! Outbound transport security: which policy mail for a recipient domain is under, what that
//! policy demands of each MX host, and what is recorded and reported about how it went.
//!
//! # Layout
//! - [`mta_sts`]: RFC 8461 — TXT record, policy, HTTPS fetch, the cache in the spool.
//! - [`report`]: RFC 8460 — result vocabulary, the daily store, the JSON report, `rua`, mail.
//! - [`https`]: the HTTPS client (policy fetches, report posts), checked against
//!   `crate::trust` (system roots plus `delivery.ca_file`); [`verify`]: the certificate check of
//!   an MX host under a policy; [`dns`]: the fields of their TXT records, domain names in ASCII.
//! - [`dane`]: RFC 7672 as a policy — what a host with DNSSEC-authenticated TLSA records
//!   demands, and its results in a report's terms (the records themselves: `crate::dane`).
//!
//! A delivery attempt looks its domain up once ([`DomainPolicy::lookup`]), asks it which MX
//! hosts it admits ([`DomainPolicy::admits`]) and what each demands ([`DomainPolicy::host`]),
//! and tells the [`Recorder`] how each session went. DANE (RFC 7672) is the
//! [`HostPolicy::Dane`] variant, chosen per host before MTA-STS (RFC 8461 2: DANE wins) when the
//! host's TLSA records are DNSSEC-authenticated.
//!
//! Imports `config`, `metrics`, `clock`, `dkim` (dates), `dane`, `dnssec` and `trust` only:
//! `outbound` consults this module, never the other way round, and nothing here touches the
//! queue or the spool's messages.

pub mod dane;
pub mod dns;
pub mod https;
pub mod mta_sts;
pub mod report;
pub mod verify;

use crate::config::MtaStsMode;
use crate::metrics::{Metrics, TlsPolicy};
use mta_sts::{FetchError, Fetcher, Lookup, StsCache, StsMode, StsPolicy};
use report::store::Store;
use report::{FailureDetail, ReportPolicy, ResultType, SessionResult};
use std::sync::Arc;

/// The `failure-reason-code` of a session refused because its MX host is not in the policy
/// (RFC 8460 has no result type of its own for it: `validation-failure`).
pub const MX_MISMATCH: &str = "mx-not-in-mta-sts-policy";

/// The policies governing mail to one recipient domain, as looked up for one attempt.
#[derive(Debug, Clone)]
pub struct DomainPolicy {
    /// The domain (ASCII, lower case).
    pub domain: String,
    /// `the MTA-STS policy of <domain>`, for replies.
    name: String,
    sts: Option<Sts>,
    /// A policy was announced but could not be fetched, and none was cached.
    sts_unfetched: Option<FetchError>,
}

#[derive(Debug, Clone)]
struct Sts {
    policy: Arc<StsPolicy>,
    /// The policy says `enforce` and `delivery.mta_sts` is `enforce`.
    enforce: bool,
}

/// Whether an MX host may receive the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Not under the enforced policy: skip it (never fall back to it). The failure is for
    /// the TLS report; the text for the deferral reply.
    Refused {
        failure: FailureDetail,
        text: String,
    },
}

/// What a connection to one MX host must achieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// No policy: STARTTLS as `delivery.tls` says.
    None { report: Option<ReportPolicy> },
    /// MTA-STS: STARTTLS, and a certificate valid for the MX host name that chains to a
    /// trusted root. Not `enforce`d: checked and reported, but the mail goes anyway.
    MtaSts { enforce: bool, report: ReportPolicy },
    /// DANE: the host's DNSSEC-authenticated TLSA records. STARTTLS, and (when any record is
    /// usable) a certificate that matches one (`crate::dane::verify`). Not `enforce`d (a
    /// message marked `TLS-Required: No`): checked and reported, but the mail goes anyway.
    /// `tlsa` is `None` when the records could not be looked up (bogus, SERVFAIL): the host
    /// is not tried, and only that failed session is recorded under it.
    Dane {
        enforce: bool,
        tlsa: Option<Arc<crate::dane::TlsaRrset>>,
        report: ReportPolicy,
    },
}

impl HostPolicy {
    /// The metric label.
    pub fn label(&self) -> TlsPolicy {
        match self {
            HostPolicy::None { .. } => TlsPolicy::None,
            HostPolicy::MtaSts { .. } => TlsPolicy::MtaSts,
            HostPolicy::Dane { .. } => TlsPolicy::Dane,
        }
    }

    /// TLS is mandatory and the certificate must verify; a failure defers the mail.
    pub fn enforced(&self) -> bool {
        matches!(
            self,
            HostPolicy::MtaSts { enforce: true, .. } | HostPolicy::Dane { enforce: true, .. }
        )
    }

    /// The certificate is checked (and a failure recorded), enforced or not.
    pub fn checks_certificate(&self) -> bool {
        match self {
            HostPolicy::None { .. } => false,
            HostPolicy::MtaSts { .. } => true,
            // A TLSA RRset of unusable records demands TLS, but authenticates nothing.
            HostPolicy::Dane { tlsa, .. } => tlsa.as_ref().is_some_and(|t| !t.usable.is_empty()),
        }
    }

    /// The same, checked and reported but never enforced (a message marked `TLS-Required:
    /// No`, RFC 8689).
    pub fn relaxed(self) -> HostPolicy {
        match self {
            HostPolicy::MtaSts { report, .. } => HostPolicy::MtaSts {
                enforce: false,
                report,
            },
            HostPolicy::Dane { tlsa, report, .. } => HostPolicy::Dane {
                enforce: false,
                tlsa,
                report,
            },
            other => other,
        }
    }

    /// How a TLS report names the policy; `None` when nothing is reported (no policy and no
    /// failed fetch to tell about).
    pub fn report(&self) -> Option<&ReportPolicy> {
        match self {
            HostPolicy::None { report } => report.as_ref(),
            HostPolicy::MtaSts { report, .. } | HostPolicy::Dane { report, .. } => Some(report),
        }
    }
}

impl DomainPolicy {
    /// No policy at all (MTA-STS off, routes, relay host).
    pub fn none(domain: &str) -> DomainPolicy {
        DomainPolicy {
            domain: domain.to_string(),
            name: format!("the MTA-STS policy of {domain}"),
            sts: None,
            sts_unfetched: None,
        }
    }

    /// Look up the policies of `domain` for a delivery now.
    pub async fn lookup(
        cache: &Arc<StsCache>,
        fetcher: &Fetcher,
        mode: MtaStsMode,
        domain: &str,
        now: i64,
    ) -> DomainPolicy {
        let Some(ascii) = dns::ascii_domain(domain) else {
            return Self::none(domain);
        };
        if mode == MtaStsMode::Off {
            return Self::none(&ascii);
        }
        match cache.lookup(fetcher, &ascii, now).await {
            Lookup::Policy { cached, .. } if cached.policy.mode == StsMode::None => {
                Self::none(&ascii)
            }
            Lookup::Policy { cached, .. } => DomainPolicy {
                sts: Some(Sts {
                    enforce: cached.policy.mode == StsMode::Enforce && mode == MtaStsMode::Enforce,
                    policy: cached.policy,
                }),
                ..Self::none(&ascii)
            },
            Lookup::None { fetch_failed, .. } => DomainPolicy {
                sts_unfetched: fetch_failed,
                ..Self::none(&ascii)
            },
        }
    }

    /// A policy is enforced for this domain: TLS mandatory, MX hosts restricted.
    pub fn enforced(&self) -> bool {
        self.sts.as_ref().is_some_and(|s| s.enforce)
    }

    /// May `host` (an MX host name) receive the mail?
    pub fn admits(&self, host: &str) -> Admission {
        let Some(sts) = &self.sts else {
            return Admission::Admitted;
        };
        // Testing: a mismatch is reported with the session ([`Self::mismatch`]), the host used.
        let Some(failure) = self.mismatch(host).filter(|_| sts.enforce) else {
            return Admission::Admitted;
        };
        Admission::Refused {
            failure,
            text: format!(
                "4.7.5 {host} is not an MX host allowed by the MTA-STS policy of {} (mx: {})",
                self.domain,
                sts.policy.mx_hosts().join(", ")
            ),
        }
    }

    /// An MX host outside a policy in testing: the failure to report with its session.
    pub fn mismatch(&self, host: &str) -> Option<FailureDetail> {
        let sts = self.sts.as_ref()?;
        (!sts.policy.allows(host)).then(|| FailureDetail {
            receiving_mx_hostname: Some(host.trim_end_matches('.').to_ascii_lowercase()),
            failure_reason_code: Some(MX_MISMATCH.into()),
            ..FailureDetail::new(ResultType::ValidationFailure)
        })
    }

    /// What a connection to any of the domain's MX hosts must achieve (MTA-STS is per domain;
    /// which hosts may be used at all is [`Self::admits`]).
    pub fn host_policy(&self) -> HostPolicy {
        match &self.sts {
            Some(sts) => HostPolicy::MtaSts {
                enforce: sts.enforce,
                report: mta_sts::report_policy(&self.domain, &sts.policy),
            },
            None => HostPolicy::None {
                report: self
                    .sts_unfetched
                    .as_ref()
                    .map(|_| mta_sts::report_unfetched(&self.domain)),
            },
        }
    }

    /// The announced policy that could not be fetched, as a failure of every session made
    /// without it.
    pub fn unfetched(&self) -> Option<FailureDetail> {
        self.sts_unfetched
            .as_ref()
            .map(|e| FailureDetail::because(e.result, &e.message))
    }

    /// `the MTA-STS policy of <domain>`, as deferral replies name it.
    pub fn policy_name(&self) -> &str {
        &self.name
    }
}

/// Where session results go: the metric, the TLS-RPT store (when reports are on) and, for
/// failures, the log.
#[derive(Clone)]
pub struct Recorder {
    pub metrics: Arc<Metrics>,
    pub store: Option<Arc<Store>>,
}

impl Recorder {
    /// One session to an MX host of `domain` under `policy`: `failure` is `None` when it met
    /// the policy. `queue_id` only names the message in the log. Returns whether it logged a
    /// `TLS policy failure` line (the caller need not log the same failure again).
    pub fn session(
        &self,
        queue_id: &str,
        domain: &DomainPolicy,
        policy: &HostPolicy,
        failure: Option<FailureDetail>,
        now: i64,
    ) -> bool {
        self.metrics.tls_policy(policy.label(), failure.is_none());
        let logged = failure.is_some() && policy.report().is_some();
        if let Some(f) = &failure {
            if logged {
                tracing::warn!(
                    queue_id,
                    domain = %domain.domain,
                    policy = policy.label().as_str(),
                    enforced = policy.enforced(),
                    result = f.result.as_str(),
                    mx = f.receiving_mx_hostname.as_deref().unwrap_or(""),
                    reason = f.failure_reason_code.as_deref().unwrap_or(""),
                    "TLS policy failure"
                );
            }
        }
        let Some(store) = &self.store else {
            return logged;
        };
        let report = policy
            .report()
            .cloned()
            .unwrap_or_else(|| ReportPolicy::none(&domain.domain));
        let result = SessionResult {
            report_domain: domain.domain.clone(),
            policy: report,
            failure,
        };
        if let Err(e) = store.record(&result, now) {
            tracing::warn!(error = %e, "cannot record a TLS report result in the spool");
        }
        logged
    }
}

#[cfg(test)]
mod tests;

//! The courier's transport security decisions: which idle connection may carry a message
//! under the policy its host is under now, a host refused by the enforced MTA-STS policy or
//! unusable for want of its TLSA records, what a connection must achieve ([`Secure`]), and
//! the TLS result of each session for the metric and the TLS report.

use super::{Courier, Parcel};
use crate::outbound::connection::{Check, Connection, OpenError, Secure, Verified};
use crate::outbound::host::{self, Governed};
use crate::outbound::next_hop::Hop;
use crate::tls_policy::report::FailureDetail;
use crate::tls_policy::{Admission, HostPolicy};

impl Courier<'_> {
    /// An idle connection may carry this message: under an enforced policy only one that met
    /// what the policy of its host demands now — a certificate verified for a host the MTA-STS
    /// policy allows, one that matched the host's TLSA records, TLS where they are unusable.
    /// `met`: the connection's host, port, whether it has TLS and how it was verified.
    pub(super) async fn may_reuse(
        &self,
        met: (String, u16, bool, Option<Verified>),
        parcel: &Parcel<'_>,
    ) -> bool {
        let (name, port, tls, verified) = met;
        let security = self.security.as_ref();
        let governed = if security.is_some_and(|s| s.dane.is_some()) {
            let hop = Hop {
                host: name.clone(),
                port,
            };
            match host::lookup(self.resolver, security, &hop, parcel.tls_optional).await {
                Ok((_, g)) => g,
                Err(_) => return false,
            }
        } else {
            Governed::By(host::sts(security, parcel.tls_optional))
        };
        match governed {
            Governed::Unknown { .. } => false,
            Governed::By(Some(p)) if p.enforced() => match &p {
                HostPolicy::Dane { tlsa, .. } if !p.checks_certificate() => tlsa.is_some() && tls,
                HostPolicy::Dane { .. } => verified == Some(Verified::Dane),
                _ => {
                    verified == Some(Verified::Pkix)
                        && security.is_some_and(|s| s.domain.admits(&name) == Admission::Admitted)
                }
            },
            Governed::By(_) => true,
        }
    }

    /// A host whose TLSA records could not be looked up, as a failed session under DANE;
    /// the text for the deferral.
    pub(super) fn tlsa_unknown(
        &self,
        host: &str,
        policy: &HostPolicy,
        error: &crate::dnssec::DnsError,
        parcel: &Parcel<'_>,
    ) -> String {
        if let Some(security) = &self.security {
            security.recorder.session(
                parcel.queue_id,
                security.domain,
                policy,
                Some(crate::tls_policy::dane::lookup_failure(host, error)),
                crate::clock::unix_now(),
            );
        }
        format!("4.7.5 the TLSA records of {host} cannot be had, so it is not used ({error})")
    }

    /// Why `host` may not be used at all (not in the enforced policy's MX list), recorded as
    /// a failed session; `None`: it may.
    pub(super) fn refused(
        &self,
        host: &str,
        host_policy: &Option<HostPolicy>,
        parcel: &Parcel<'_>,
    ) -> Option<String> {
        let security = self.security.as_ref()?;
        // Only MTA-STS restricts the MX hosts; a host under DANE came from a secure MX answer.
        let policy = host_policy
            .as_ref()
            .filter(|p| matches!(p, HostPolicy::MtaSts { enforce: true, .. }))?;
        let Admission::Refused { failure, text } = security.domain.admits(host) else {
            return None;
        };
        security.recorder.session(
            parcel.queue_id,
            security.domain,
            policy,
            Some(failure),
            crate::clock::unix_now(),
        );
        Some(text)
    }

    /// What a connection to a host under `host_policy` must achieve (`dane_name`: how
    /// replies name a DANE policy).
    pub(super) fn secure<'s>(
        &'s self,
        host_policy: &'s Option<HostPolicy>,
        dane_name: &'s str,
    ) -> Option<Secure<'s>> {
        let security = self.security.as_ref()?;
        let policy = host_policy.as_ref()?;
        let check = match policy {
            HostPolicy::None { .. } => return None,
            HostPolicy::MtaSts { .. } => Check::Pkix(security.trust?),
            HostPolicy::Dane { tlsa: None, .. } => return None,
            HostPolicy::Dane {
                tlsa: Some(tlsa), ..
            } if tlsa.usable.is_empty() => Check::Encrypt,
            HostPolicy::Dane {
                tlsa: Some(tlsa), ..
            } => Check::Dane {
                tlsa,
                recipient_domain: &security.domain.domain,
            },
        };
        let name = match policy {
            HostPolicy::Dane { .. } => dane_name,
            _ => security.domain.policy_name(),
        };
        Some(Secure {
            check,
            enforce: policy.enforced(),
            name,
        })
    }

    /// The TLS result of one session (a connection opened, or refused for TLS reasons), for
    /// the metric and the TLS report. A connection that failed before TLS (refused, no
    /// greeting) is not a session of the policy's. True when a policy failure was logged.
    pub(super) fn record(
        &self,
        parcel: &Parcel<'_>,
        host: &str,
        addr: std::net::SocketAddr,
        host_policy: &Option<HostPolicy>,
        opened: &Result<Connection, OpenError>,
    ) -> bool {
        let (Some(security), Some(policy)) = (&self.security, host_policy) else {
            return false;
        };
        let failure: Option<FailureDetail> = match (opened, policy) {
            // Encrypted as they demand, but nothing they say could authenticate it.
            (Ok(c), HostPolicy::Dane { .. }) if !policy.checks_certificate() => c
                .policy_failure
                .clone()
                .or_else(|| Some(crate::tls_policy::dane::unusable())),
            (Ok(c), HostPolicy::Dane { .. }) => c.policy_failure.clone(),
            (Ok(c), _) => c
                .policy_failure
                .clone()
                .or_else(|| security.domain.mismatch(host))
                .or_else(|| security.domain.unfetched()),
            (Err(e), _) => match e.report() {
                Some(f) => Some(f.clone()),
                None => return false,
            },
        };
        let failure = failure.map(|f| FailureDetail {
            receiving_mx_hostname: f
                .receiving_mx_hostname
                .clone()
                .or_else(|| Some(host.to_ascii_lowercase())),
            receiving_ip: f.receiving_ip.or(Some(addr.ip())),
            ..f
        });
        security.recorder.session(
            parcel.queue_id,
            security.domain,
            policy,
            failure,
            crate::clock::unix_now(),
        )
    }
}

/// How replies name the DANE policy of a host: `the DANE policy of mx.example.net` (its TLSA
/// base domain).
pub(super) fn dane_name(policy: &Option<HostPolicy>) -> String {
    match policy {
        Some(HostPolicy::Dane {
            tlsa: Some(tlsa), ..
        }) => format!("the DANE policy of {}", tlsa.base_domain()),
        _ => String::new(),
    }
}

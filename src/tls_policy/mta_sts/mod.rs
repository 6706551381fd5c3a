//! MTA-STS (RFC 8461): the `_mta-sts` TXT record ([`record`]), the policy and its MX
//! patterns ([`policy`]), fetching it over HTTPS ([`fetch`]) and the cache that keeps it in
//! the spool ([`cache`]).

pub mod cache;
pub mod fetch;
pub mod policy;
pub mod record;

pub use cache::{Cached, Fetcher, Lookup, StsCache};
pub use fetch::FetchError;
pub use policy::{MxPattern, StsMode, StsPolicy};

use super::report::{PolicyType, ReportPolicy};

/// How a TLS report names a session under `policy` of `domain`.
pub fn report_policy(domain: &str, policy: &StsPolicy) -> ReportPolicy {
    ReportPolicy {
        kind: PolicyType::Sts,
        strings: policy.lines(),
        domain: domain.to_string(),
        mx_host: policy.mx_hosts(),
    }
}

/// How a TLS report names a session for which `domain`'s announced policy could not be had.
pub fn report_unfetched(domain: &str) -> ReportPolicy {
    ReportPolicy {
        kind: PolicyType::Sts,
        strings: Vec::new(),
        domain: domain.to_string(),
        mx_host: Vec::new(),
    }
}

//! DANE (RFC 7672) as a transport security policy: what an MX host with DNSSEC-authenticated
//! TLSA records demands of a connection ([`HostPolicy::Dane`]), and how its sessions and
//! failures read in a TLS report: `policy-type` `tlsa`, the RRset as `policy-string`, the
//! recipient domain as `policy-domain` (whose `_smtp._tls` record says where the report goes),
//! and the RFC 8460 result types `tlsa-invalid` (no record matched, or none is usable) and
//! `dnssec-invalid` (the TLSA records could not be had: bogus, SERVFAIL, no answer).
//! `dane-required` is for senders that demand DANE of every host; the relay does not (a host
//! without TLSA records gets MTA-STS or opportunistic TLS), so it never reports it.

use super::report::{FailureDetail, PolicyType, ReportPolicy, ResultType};
use super::{DomainPolicy, HostPolicy};
use crate::dane::{Failure, TlsaRrset};
use crate::dnssec::DnsError;
use std::sync::Arc;

/// What `tlsa` (the host's secure TLSA RRset) demands of a connection for mail to `domain`.
pub fn host_policy(domain: &DomainPolicy, tlsa: TlsaRrset) -> HostPolicy {
    HostPolicy::Dane {
        enforce: true,
        report: report_policy(&domain.domain, Some(&tlsa)),
        tlsa: Some(Arc::new(tlsa)),
    }
}

/// The policy of a host whose TLSA records could not be looked up, for recording that session.
pub fn unknown(domain: &DomainPolicy) -> HostPolicy {
    HostPolicy::Dane {
        enforce: true,
        report: report_policy(&domain.domain, None),
        tlsa: None,
    }
}

/// How a TLS report names a DANE session for mail to `domain`: the RRset's records, or none
/// when they could not be looked up.
pub fn report_policy(domain: &str, tlsa: Option<&TlsaRrset>) -> ReportPolicy {
    ReportPolicy {
        kind: PolicyType::Tlsa,
        strings: tlsa.map(|t| t.published.clone()).unwrap_or_default(),
        domain: domain.to_string(),
        mx_host: Vec::new(),
    }
}

/// The TLSA records of `host` could not be looked up: the host's security is unknown.
pub fn lookup_failure(host: &str, e: &DnsError) -> FailureDetail {
    FailureDetail {
        receiving_mx_hostname: Some(host.trim_end_matches('.').to_ascii_lowercase()),
        ..FailureDetail::because(ResultType::DnssecInvalid, &e.to_string())
    }
}

/// A certificate that did not authenticate through the TLSA records.
pub fn check_failure(f: &Failure) -> FailureDetail {
    let result = match f {
        Failure::NoMatch | Failure::NotTrusted(_) | Failure::Unreadable(_) => {
            ResultType::TlsaInvalid
        }
        Failure::Expired(_) => ResultType::CertificateExpired,
        Failure::NameMismatch => ResultType::CertificateHostMismatch,
    };
    FailureDetail::because(result, &f.to_string())
}

/// A TLSA RRset with no record SMTP can use: the session is encrypted, nothing authenticated.
pub fn unusable() -> FailureDetail {
    FailureDetail {
        failure_reason_code: Some(
            "no usable TLSA record (only DANE-TA and DANE-EE serve SMTP, RFC 7672 3.1)".into(),
        ),
        ..FailureDetail::new(ResultType::TlsaInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dane::Tlsa;
    use mail_auth::hickory_resolver::proto::rr::rdata::TLSA;
    use mail_auth::hickory_resolver::proto::rr::Name;

    #[test]
    fn a_dane_host_policy_as_reports_name_it() {
        let rec = TLSA::new(3.into(), 1.into(), 1.into(), vec![0xab; 32]);
        let tlsa = TlsaRrset {
            base: Name::from_ascii("mx.example.net.").unwrap(),
            published: vec![crate::dane::tlsa::presentation(&rec)],
            usable: vec![Tlsa::usable(&rec).unwrap()],
        };
        let p = host_policy(&DomainPolicy::none("example.com"), tlsa);
        assert_eq!(p.label(), crate::metrics::TlsPolicy::Dane);
        assert!(p.enforced() && p.checks_certificate());
        let r = p.report().unwrap();
        assert_eq!(r.kind, PolicyType::Tlsa);
        assert_eq!(r.domain, "example.com");
        assert_eq!(r.strings.len(), 1);
        assert!(r.strings[0].starts_with("3 1 1 ABAB"));
        let relaxed = p.relaxed();
        assert!(!relaxed.enforced() && relaxed.checks_certificate());
        let unknown = unknown(&DomainPolicy::none("example.com"));
        assert!(unknown.enforced() && !unknown.checks_certificate());
        assert!(unknown.report().unwrap().strings.is_empty());
    }

    #[test]
    fn failures_by_result_type() {
        assert_eq!(
            check_failure(&Failure::NoMatch).result,
            ResultType::TlsaInvalid
        );
        assert_eq!(
            check_failure(&Failure::NameMismatch).result,
            ResultType::CertificateHostMismatch
        );
        assert_eq!(
            check_failure(&Failure::Expired("x".into())).result,
            ResultType::CertificateExpired
        );
        assert_eq!(unusable().result, ResultType::TlsaInvalid);
        let e = DnsError::NoNameserver;
        let f = lookup_failure("MX.example.net.", &e);
        assert_eq!(f.result, ResultType::DnssecInvalid);
        assert_eq!(f.receiving_mx_hostname.as_deref(), Some("mx.example.net"));
    }
}

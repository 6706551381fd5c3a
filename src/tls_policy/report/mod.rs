//! TLS-RPT (RFC 8460): what a session under a policy came to, in the report's own terms
//! (policy types, result types, failure details); the store that counts them per recipient
//! domain and UTC day in the spool ([`store`]); the daily JSON report ([`json`]); the
//! `_smtp._tls` record that says where it goes ([`rua`]); the report as a message
//! ([`mail`]); and sending a day's reports ([`send`]). Policies of any kind (MTA-STS now, DANE's `tlsa` later) produce the same
//! [`SessionResult`].

pub mod json;
pub mod mail;
pub mod rua;
pub mod send;
pub mod store;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `policy-type` (RFC 8460 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    /// MTA-STS.
    Sts,
    /// DANE (the policy domain is the TLSA base domain, the MX host).
    Tlsa,
    /// Neither: the session was opportunistic.
    NoPolicyFound,
}

/// `result-type` (RFC 8460 4.3.2, the IANA "STARTTLS Validation Result Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl ResultType {
    /// The name as a report and the logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// What a certificate that did not verify (rustls' verdict) is called in a report.
    pub fn of_certificate_error(e: &rustls::CertificateError) -> ResultType {
        use rustls::CertificateError as C;
        match e {
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => ResultType::CertificateExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            C::UnknownIssuer | C::BadSignature | C::Revoked | C::InvalidPurpose => {
                ResultType::CertificateNotTrusted
            }
            C::InvalidPurposeContext { .. } => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        }
    }

    /// What a failed TLS handshake is called in a report.
    pub fn of_tls_error(e: &rustls::Error) -> ResultType {
        match e {
            rustls::Error::InvalidCertificate(c) => Self::of_certificate_error(c),
            _ => ResultType::ValidationFailure,
        }
    }
}

impl std::fmt::Display for ResultType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy a session was under, as a report names it (RFC 8460 4.3 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReportPolicy {
    #[serde(rename = "policy-type")]
    pub kind: PolicyType,
    /// The policy's text: an MTA-STS policy's lines, a TLSA RRset's records.
    #[serde(rename = "policy-string", default)]
    pub strings: Vec<String>,
    /// The recipient domain (MTA-STS) or the TLSA base domain (DANE).
    #[serde(rename = "policy-domain")]
    pub domain: String,
    /// MTA-STS: the policy's `mx` patterns.
    #[serde(rename = "mx-host", default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

impl ReportPolicy {
    /// No policy applied to mail for `domain`.
    pub fn none(domain: &str) -> ReportPolicy {
        ReportPolicy {
            kind: PolicyType::NoPolicyFound,
            strings: Vec::new(),
            domain: domain.to_string(),
            mx_host: Vec::new(),
        }
    }
}

/// One failed session, as a report details it (RFC 8460 4.3 `failure-details`, without the
/// count: equal details are counted together).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    #[serde(rename = "result-type")]
    pub result: ResultType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

impl FailureDetail {
    /// A failure of this type with nothing else known yet.
    pub fn new(result: ResultType) -> FailureDetail {
        FailureDetail {
            result,
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            additional_information: None,
            failure_reason_code: None,
        }
    }

    /// A failure of this type with its reason as the report's `failure-reason-code` (the first
    /// 200 characters: a report is mailed and posted, the reason is for a person).
    pub fn because(result: ResultType, reason: &str) -> FailureDetail {
        FailureDetail {
            failure_reason_code: Some(reason.chars().take(200).collect()),
            ..FailureDetail::new(result)
        }
    }
}

/// What one delivery session under a policy came to, for the report to `report_domain` (the
/// recipient domain, whose `_smtp._tls` record says where reports go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionResult {
    pub report_domain: String,
    pub policy: ReportPolicy,
    /// `None`: the session met the policy.
    pub failure: Option<FailureDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_registered_ones() {
        assert_eq!(
            serde_json::to_string(&ResultType::StsWebpkiInvalid).unwrap(),
            "\"sts-webpki-invalid\""
        );
        assert_eq!(
            serde_json::to_string(&PolicyType::NoPolicyFound).unwrap(),
            "\"no-policy-found\""
        );
        for r in [ResultType::StarttlsNotSupported, ResultType::DaneRequired] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        use rustls::CertificateError as C;
        assert_eq!(
            ResultType::of_certificate_error(&C::NotValidForName),
            ResultType::CertificateHostMismatch
        );
        assert_eq!(
            ResultType::of_certificate_error(&C::Expired),
            ResultType::CertificateExpired
        );
        assert_eq!(
            ResultType::of_certificate_error(&C::UnknownIssuer),
            ResultType::CertificateNotTrusted
        );
    }
}

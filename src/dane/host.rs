//! Which TLSA records apply to an MX host (RFC 7672 2.2). DANE applies only where every link
//! that led to the host was authenticated: the MX RRset (or, without MX, its secure denial)
//! and the host's address records must be secure, and so must the TLSA RRset. The TLSA base
//! domain is the host name — or, when its address records came through a secure CNAME chain,
//! first the chain's target and then, if that has no TLSA records, the host name (2.2.3).
//!
//! A failed lookup (the resolver's SERVFAIL for a bogus RRset, or silence) is the caller's to
//! turn into a deferral: the host's security cannot be known.

use super::tlsa::{self, Tlsa};
use super::verify::DaneVerifier;
use crate::dnssec::lookup::Answer;
use crate::dnssec::{DnsError, Resolver, Security};
use mail_auth::hickory_resolver::proto::rr::Name;
use std::net::IpAddr;

/// What DANE says about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDane {
    /// DANE does not apply; why, for the logs.
    None(NoDane),
    /// A secure TLSA RRset of which no record is usable for SMTP: STARTTLS is still mandatory
    /// (RFC 7672 2.2: the server announced TLS through DNSSEC), the certificate is not
    /// authenticated by DANE.
    Unusable(TlsaRrset),
    /// Usable records: STARTTLS is mandatory and the certificate must match one of them.
    Usable(TlsaRrset),
}

/// Why DANE does not apply to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDane {
    /// The MX RRset (or its absence) was not DNSSEC-authenticated.
    InsecureMx,
    /// The host's address records were not.
    InsecureAddresses,
    /// The TLSA answer was not.
    InsecureTlsa,
    /// Securely, there are no TLSA records.
    NoRecords,
}

impl NoDane {
    pub fn as_str(self) -> &'static str {
        match self {
            NoDane::InsecureMx => "insecure MX records",
            NoDane::InsecureAddresses => "insecure address records",
            NoDane::InsecureTlsa => "insecure TLSA records",
            NoDane::NoRecords => "no TLSA records",
        }
    }
}

/// A secure TLSA RRset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaRrset {
    /// The TLSA base domain: the records are at `_25._tcp.` this name.
    pub base: Name,
    /// Every record as published (presentation form), usable or not: a TLS report's
    /// `policy-string`.
    pub published: Vec<String>,
    pub usable: Vec<Tlsa>,
}

impl TlsaRrset {
    /// The base domain as text, without the final dot (the SNI to send, RFC 7672 8.1, and a
    /// report's `policy-domain`).
    pub fn base_domain(&self) -> String {
        self.base
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    /// The certificate check for a connection to this host: DANE-TA names are the TLSA
    /// base domain, the MX host name and the recipient domain (RFC 7672 3.2.2).
    pub fn verifier(&self, mx_host: &str, recipient_domain: &str) -> DaneVerifier {
        let base = self.base_domain();
        DaneVerifier::new(self.usable.clone(), &[&base, mx_host, recipient_domain])
    }
}

/// The TLSA records that apply to `host`, reached through an MX answer of security `mx`
/// (for a domain without MX records: the security of that denial) and with `addresses` its
/// address answer.
pub async fn for_host(
    resolver: &Resolver,
    host: &Name,
    mx: Security,
    addresses: &Answer<IpAddr>,
) -> Result<HostDane, DnsError> {
    if mx != Security::Secure {
        return Ok(HostDane::None(NoDane::InsecureMx));
    }
    if addresses.security != Security::Secure {
        return Ok(HostDane::None(NoDane::InsecureAddresses));
    }
    let mut bases = Vec::with_capacity(2);
    if addresses.is_alias() {
        bases.push(addresses.owner.clone());
    }
    bases.push(host.clone());
    for base in bases {
        let name = tlsa_name(&base)?;
        let answer = resolver.tlsa(&name).await?;
        if answer.security != Security::Secure {
            return Ok(HostDane::None(NoDane::InsecureTlsa));
        }
        if answer.records.is_empty() {
            continue;
        }
        let rrset = TlsaRrset {
            published: answer.records.iter().map(tlsa::presentation).collect(),
            usable: answer.records.iter().filter_map(Tlsa::usable).collect(),
            base,
        };
        return Ok(if rrset.usable.is_empty() {
            HostDane::Unusable(rrset)
        } else {
            HostDane::Usable(rrset)
        });
    }
    Ok(HostDane::None(NoDane::NoRecords))
}

/// `_25._tcp.` + `base`.
pub fn tlsa_name(base: &Name) -> Result<Name, DnsError> {
    let bad = |_| DnsError::BadName(format!("_25._tcp.{}", base.to_ascii()));
    base.prepend_label("_tcp")
        .and_then(|n| n.prepend_label("_25"))
        .map_err(bad)
}

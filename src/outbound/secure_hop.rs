//! Next hops through the DNSSEC-aware resolver (`dns.dnssec: trust-ad`): the answers of
//! [`super::next_hop`] — MX hosts by preference, shuffled among equals; the domain itself when
//! it has no MX (RFC 5321 5.1); a null MX (RFC 7505) or a domain that does not exist final —
//! each with whether it was DNSSEC-authenticated, which DANE needs (RFC 7672 2.2). Routes are
//! the caller's: a configured next hop has no DNS to authenticate.

use super::next_hop::{self, Hop, HopError};
use crate::dnssec::lookup::Answer;
use crate::dnssec::{fqdn, Resolver, Security};
use std::net::{IpAddr, SocketAddr};

/// The hosts to try for a domain, and how their list was learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hops {
    pub hops: Vec<Hop>,
    /// The MX answer (or, for the domain itself as its host, the denial of MX records).
    pub mx: Security,
}

/// The addresses of a hop, with the answer they came in (`None` for an IP literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    pub addrs: Vec<SocketAddr>,
    pub answer: Option<Answer<IpAddr>>,
}

/// The hosts to try for `domain`, in order.
pub async fn resolve(resolver: &Resolver, domain: &str, port: u16) -> Result<Hops, HopError> {
    let name = fqdn(domain).map_err(|e| HopError::Permanent(e.to_string()))?;
    let answer = resolver
        .mx(&name)
        .await
        .map_err(|e| HopError::Temporary(format!("MX lookup for {domain} failed: {e}")))?;
    if answer.nx_domain {
        return Err(HopError::Permanent(format!("{domain}: no such domain")));
    }
    let mx = answer
        .records
        .iter()
        .map(|r| (r.preference, r.exchange.to_ascii()));
    Ok(Hops {
        hops: next_hop::order(domain, port, mx)?,
        mx: answer.security,
    })
}

/// The addresses of `hop`, IPv6 first.
pub async fn addresses(resolver: &Resolver, hop: &Hop) -> Result<Addresses, HopError> {
    if let Some(addr) = next_hop::literal(hop) {
        return Ok(Addresses {
            addrs: vec![addr],
            answer: None,
        });
    }
    let name = fqdn(&hop.host).map_err(|e| HopError::Permanent(e.to_string()))?;
    let answer = resolver
        .addresses(&name)
        .await
        .map_err(|e| HopError::Temporary(format!("address lookup for {} failed: {e}", hop.host)))?;
    if answer.records.is_empty() {
        return Err(HopError::Permanent(format!("{} has no address", hop.host)));
    }
    Ok(Addresses {
        addrs: answer
            .records
            .iter()
            .map(|ip| SocketAddr::new(*ip, hop.port))
            .collect(),
        answer: Some(answer),
    })
}

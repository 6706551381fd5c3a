//! A next hop's addresses and the transport security policy of its host, looked up together
//! because DANE needs both. With `delivery.dane`, through the DNSSEC-aware resolver, a host
//! whose MX answer, address records and TLSA records are all DNSSEC-authenticated is under its
//! TLSA records (RFC 7672), whatever the recipient domain's MTA-STS policy says (RFC 8461 2:
//! DANE wins); any other host is under MTA-STS, or nothing. A host whose TLSA records cannot be
//! looked up (bogus: the resolver's SERVFAIL) must not be used at all: its security is unknown.
//! A message marked `TLS-Required: No` (RFC 8689) has its policies checked and reported, never
//! enforced, and goes on without DANE where the records cannot be had.

use super::courier::Security;
use super::next_hop::{self, Hop, HopError};
use super::secure_hop;
use crate::dane::HostDane;
use crate::dnssec::{self, DnsError};
use crate::tls_policy::{self, HostPolicy};
use mail_auth::MessageAuthenticator;
use std::net::SocketAddr;

/// DANE for one MX delivery: the resolver whose AD bit counts, and the security of the MX
/// answer that named the hosts (for a domain without MX: of that denial).
#[derive(Clone, Copy)]
pub struct Dane<'a> {
    pub resolver: &'a dnssec::Resolver,
    pub mx: dnssec::Security,
}

/// What governs connections to a host.
#[derive(Debug)]
pub enum Governed {
    /// This policy; `None`: no transport security (relay host, routes).
    By(Option<HostPolicy>),
    /// Its TLSA records could not be looked up: not to be used. `policy` is what to record
    /// the failed session under.
    Unknown { policy: HostPolicy, error: DnsError },
}

/// The addresses of `hop` and what governs connections to its host, for mail under
/// `security` (`None`: no transport security).
pub async fn lookup(
    resolver: &MessageAuthenticator,
    security: Option<&Security<'_>>,
    hop: &Hop,
    tls_optional: bool,
) -> Result<(Vec<SocketAddr>, Governed), HopError> {
    let Some((security, dane)) = security.and_then(|s| s.dane.map(|d| (s, d))) else {
        let addrs = next_hop::addresses(resolver, hop).await?;
        return Ok((addrs, Governed::By(sts(security, tls_optional))));
    };
    let found = secure_hop::addresses(dane.resolver, hop).await?;
    let by_sts = || Governed::By(sts(Some(security), tls_optional));
    // An address literal has no DNS to authenticate.
    let Some(answer) = &found.answer else {
        return Ok((found.addrs, by_sts()));
    };
    let governed = match crate::dane::for_host(dane.resolver, &answer.name, dane.mx, answer).await {
        Ok(HostDane::Usable(tlsa) | HostDane::Unusable(tlsa)) => {
            let policy = tls_policy::dane::host_policy(security.domain, tlsa);
            Governed::By(Some(relax(policy, tls_optional)))
        }
        Ok(HostDane::None(why)) => {
            tracing::debug!(host = %hop.host, why = why.as_str(), "DANE does not apply");
            by_sts()
        }
        Err(error) if tls_optional => {
            tracing::debug!(host = %hop.host, %error, "TLSA lookup failed; TLS-Required: No, so DANE is not applied");
            by_sts()
        }
        Err(error) => Governed::Unknown {
            policy: tls_policy::dane::unknown(security.domain),
            error,
        },
    };
    Ok((found.addrs, governed))
}

/// The recipient domain's MTA-STS policy (or none) for its MX hosts.
pub fn sts(security: Option<&Security<'_>>, tls_optional: bool) -> Option<HostPolicy> {
    Some(relax(security?.domain.host_policy(), tls_optional))
}

/// A message marked `TLS-Required: No` is checked but never held.
fn relax(policy: HostPolicy, tls_optional: bool) -> HostPolicy {
    if tls_optional {
        policy.relaxed()
    } else {
        policy
    }
}

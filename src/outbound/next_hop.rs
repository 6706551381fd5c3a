//! Where mail for a domain goes: a configured route, else its MX hosts by preference (shuffled
//! among equals), else the domain itself (implicit MX, RFC 5321 5.1). A null MX (RFC 7505) or
//! a domain that does not exist fails permanently.

use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::MessageAuthenticator;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// A host to try, with its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub port: u16,
}

/// Why no next hop could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopError {
    /// Final: null MX, no such domain.
    Permanent(String),
    /// DNS trouble: try later.
    Temporary(String),
}

/// The hosts to try for `domain`, in order.
pub async fn resolve(
    resolver: &MessageAuthenticator,
    routes: &BTreeMap<String, (String, u16)>,
    domain: &str,
    port: u16,
) -> Result<Vec<Hop>, HopError> {
    if let Some((host, p)) = routes.get(domain) {
        return Ok(vec![Hop {
            host: host.clone(),
            port: *p,
        }]);
    }
    let name = format!("{}.", domain.trim_end_matches('.'));
    match resolver.resolver().mx_lookup(name.as_str()).await {
        Ok(lookup) => {
            let mx = lookup.answers().iter().filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            });
            order(domain, port, mx)
        }
        Err(e) if e.is_nx_domain() => Err(HopError::Permanent(format!("{domain}: no such domain"))),
        Err(e) if e.is_no_records_found() => order(domain, port, []),
        Err(e) => Err(HopError::Temporary(format!(
            "MX lookup for {domain} failed: {e}"
        ))),
    }
}

/// The hosts to try, from a domain's MX records (preference, exchange) as DNS gave them:
/// lowest preference first, equal preferences in random order (they share the load); the
/// domain itself when it has none (RFC 5321 5.1); a null MX (RFC 7505) refuses mail.
pub(super) fn order(
    domain: &str,
    port: u16,
    mx: impl IntoIterator<Item = (u16, String)>,
) -> Result<Vec<Hop>, HopError> {
    let mut mx: Vec<(u16, String)> = mx
        .into_iter()
        .map(|(pref, host)| (pref, host.trim_end_matches('.').to_ascii_lowercase()))
        .collect();
    if mx.is_empty() {
        return Ok(vec![Hop {
            host: domain.trim_end_matches('.').to_string(),
            port,
        }]);
    }
    if mx.len() == 1 && mx[0].1.is_empty() {
        return Err(HopError::Permanent(format!(
            "{domain} does not accept mail (null MX, RFC 7505)"
        )));
    }
    use rand::seq::SliceRandom;
    mx.shuffle(&mut rand::rng());
    mx.sort_by_key(|(pref, _)| *pref);
    Ok(mx
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(_, host)| Hop { host, port })
        .collect())
}

/// An address literal (`192.0.2.1`, `[2001:db8::1]`) names its own address.
pub(super) fn literal(hop: &Hop) -> Option<SocketAddr> {
    let ip = hop.host.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, hop.port))
}

/// The addresses of a hop: IPv6 then IPv4, both families asked (`resolver::addresses`).
pub async fn addresses(
    resolver: &MessageAuthenticator,
    hop: &Hop,
) -> Result<Vec<SocketAddr>, HopError> {
    use crate::resolver::AddressError;
    crate::resolver::addresses(resolver, &hop.host, hop.port)
        .await
        .map_err(|e| match e {
            AddressError::NoSuchHost | AddressError::NoAddress => {
                HopError::Permanent(format!("{} has no address", hop.host))
            }
            AddressError::Failed(why) => {
                HopError::Temporary(format!("address lookup for {} failed: {why}", hop.host))
            }
        })
}

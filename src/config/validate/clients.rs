//! `clients`: who may submit (an AUTH user with a password hash, a trusted network, a local
//! unix user) and as which senders (`allow_from`).

use super::{is_hostname, root, Checker};
use crate::config::raw::RawClient;
use crate::config::{Client, ClientKind, SenderPattern};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Parse one `allow_from` entry.
pub(crate) fn sender_pattern(s: &str) -> Option<SenderPattern> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(d) = s.strip_prefix("*.") {
        return is_hostname(d).then(|| SenderPattern::Subdomains(d.to_string()));
    }
    if let Some((local, domain)) = s.rsplit_once('@') {
        return (!local.is_empty() && is_hostname(domain))
            .then(|| SenderPattern::Address(s.clone()));
    }
    is_hostname(&s).then_some(SenderPattern::Domain(s))
}

pub(super) fn check(c: &mut Checker, raw: &[RawClient]) -> Vec<Client> {
    let mut out = Vec::new();
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for (i, rc) in raw.iter().enumerate() {
        let p = root().key("clients").index(i);
        let kinds = [
            rc.user.is_some(),
            rc.network.is_some(),
            rc.unix_user.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            c.err(
                &p,
                "a client is exactly one of user: (with password_hash), network: or unix_user:",
            );
            continue;
        }
        let kind = if let Some(user) = &rc.user {
            if let Some(prev) = users.insert(user.clone(), i) {
                c.err(
                    &p.key("user"),
                    format!("user '{user}' is already defined by clients[{prev}]"),
                );
            }
            match &rc.password_hash {
                None => {
                    c.err(
                        &p,
                        "password_hash is missing (make one with `dkim-relay hash-password`)",
                    );
                    continue;
                }
                Some(h) => {
                    let ok = argon2::PasswordHash::new(h)
                        .map(|ph| {
                            ph.algorithm.as_str() == "argon2id"
                                || ph.algorithm.as_str() == "argon2i"
                                || ph.algorithm.as_str() == "argon2d"
                        })
                        .unwrap_or(false)
                        || h.starts_with("$2b$")
                        || h.starts_with("$2a$")
                        || h.starts_with("$2y$");
                    if !ok {
                        c.err(&p.key("password_hash"), "not an argon2id or bcrypt hash (make one with `dkim-relay hash-password`)");
                    }
                    ClientKind::User {
                        name: user.clone(),
                        password_hash: h.clone(),
                    }
                }
            }
        } else if let Some(net) = &rc.network {
            if rc.password_hash.is_some() {
                c.err(
                    &p.key("password_hash"),
                    "only a user: client has a password",
                );
            }
            let parsed = net
                .trim()
                .parse::<ipnet::IpNet>()
                .or_else(|_| net.trim().parse::<IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => ClientKind::Network(n.trunc()),
                Err(_) => {
                    c.err(
                        &p.key("network"),
                        format!("'{net}' is not a network in CIDR form (10.0.0.0/8)"),
                    );
                    continue;
                }
            }
        } else if let Some(u) = &rc.unix_user {
            ClientKind::UnixUser(u.clone())
        } else {
            continue;
        };
        if rc.allow_from.is_empty() {
            c.err(
                &p.key("allow_from"),
                "empty: list the domains or addresses this client may send as",
            );
        }
        let mut allow_from = Vec::new();
        for (j, a) in rc.allow_from.iter().enumerate() {
            match sender_pattern(a) {
                Some(pat) => allow_from.push(pat),
                None => c.err(
                    &p.key("allow_from").index(j),
                    format!("'{a}' is not a domain, *.domain or address"),
                ),
            }
        }
        out.push(Client { kind, allow_from });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_patterns() {
        assert_eq!(
            sender_pattern("Example.com"),
            Some(SenderPattern::Domain("example.com".into()))
        );
        assert_eq!(
            sender_pattern("*.example.com"),
            Some(SenderPattern::Subdomains("example.com".into()))
        );
        assert_eq!(
            sender_pattern("a@example.org"),
            Some(SenderPattern::Address("a@example.org".into()))
        );
        assert_eq!(sender_pattern("@example.org"), None);
        assert_eq!(sender_pattern("exa mple.org"), None);
    }
}

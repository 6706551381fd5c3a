//! Who may send as whom: the identity of a session (AUTH user, unix user or trusted network)
//! and its `allow_from` list, applied to the envelope sender and to the header From.

use crate::config::{Client, ClientKind, SenderPattern};
use crate::smtp::address::{domain_of, is_same_or_subdomain};
use std::net::IpAddr;

/// An identified client: what the configuration allows it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// For logs and Received: the AUTH user, `unix:<user>` or `network:<cidr>`.
    pub name: String,
    pub allow_from: Vec<SenderPattern>,
    /// Identified by SMTP AUTH (ESMTPA in Received).
    pub authenticated: bool,
}

impl Identity {
    fn of(client: &Client, name: String, authenticated: bool) -> Identity {
        Identity {
            name,
            allow_from: client.allow_from.clone(),
            authenticated,
        }
    }

    /// May this identity send as `address`?
    pub fn may_send_as(&self, address: &str) -> bool {
        sender_allowed(&self.allow_from, address)
    }
}

/// Does any pattern allow `address`?
pub fn sender_allowed(patterns: &[SenderPattern], address: &str) -> bool {
    let Some(domain) = domain_of(address) else {
        return false;
    };
    let lower = address.to_ascii_lowercase();
    patterns.iter().any(|p| match p {
        SenderPattern::Domain(d) => domain == *d,
        SenderPattern::Subdomains(d) => domain != *d && is_same_or_subdomain(&domain, d),
        SenderPattern::Address(a) => lower == *a,
    })
}

/// The trusted-network client covering `ip`, if any (the most specific network wins).
pub fn network_identity(clients: &[Client], ip: IpAddr) -> Option<Identity> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    clients
        .iter()
        .filter_map(|c| match &c.kind {
            ClientKind::Network(net) if net.contains(&ip) => Some((net.prefix_len(), c, net)),
            _ => None,
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, c, net)| Identity::of(c, format!("network:{net}"), false))
}

/// The unix-user client for a peer uid, if any (by name or by number).
pub fn unix_identity(clients: &[Client], uid: u32) -> Option<Identity> {
    let name = crate::sys::user_name(uid);
    clients.iter().find_map(|c| match &c.kind {
        ClientKind::UnixUser(u)
            if Some(u.as_str()) == name.as_deref() || u.parse::<u32>().ok() == Some(uid) =>
        {
            Some(Identity::of(
                c,
                format!("unix:{}", name.clone().unwrap_or_else(|| uid.to_string())),
                false,
            ))
        }
        _ => None,
    })
}

/// The AUTH user client named `user`.
pub fn user_client<'a>(clients: &'a [Client], user: &str) -> Option<(&'a Client, &'a str)> {
    clients.iter().find_map(|c| match &c.kind {
        ClientKind::User {
            name,
            password_hash,
        } if name == user => Some((c, password_hash.as_str())),
        _ => None,
    })
}

/// The identity of an AUTH user that proved its password.
pub fn user_identity(client: &Client, user: &str) -> Identity {
    Identity::of(client, user.to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = vec![
            SenderPattern::Domain("example.com".into()),
            SenderPattern::Subdomains("example.net".into()),
            SenderPattern::Address("alerts@example.org".into()),
        ];
        assert!(sender_allowed(&p, "a@example.com"));
        assert!(sender_allowed(&p, "a@EXAMPLE.com"));
        assert!(!sender_allowed(&p, "a@sub.example.com"));
        assert!(sender_allowed(&p, "a@sub.example.net"));
        assert!(!sender_allowed(&p, "a@example.net"));
        assert!(sender_allowed(&p, "Alerts@example.org"));
        assert!(!sender_allowed(&p, "other@example.org"));
        assert!(!sender_allowed(&p, "a@evil-example.com"));
        assert!(!sender_allowed(&p, "root"));
    }
}

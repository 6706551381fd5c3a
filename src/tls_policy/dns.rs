//! The DNS questions the policies ask: TXT records, each as the concatenation of its strings
//! (RFC 8461 3.1, RFC 8460 3), and the ASCII form of a domain name.

use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::MessageAuthenticator;

/// The TXT records at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// NXDOMAIN or no TXT record.
    None,
    Records(Vec<String>),
    /// The lookup failed (timeout, SERVFAIL).
    Error(String),
}

pub async fn txt_records(resolver: &MessageAuthenticator, name: &str) -> TxtAnswer {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.resolver().txt_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let records: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                TxtAnswer::None
            } else {
                TxtAnswer::Records(records)
            }
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => TxtAnswer::None,
        Err(e) => TxtAnswer::Error(e.to_string()),
    }
}

/// A domain as DNS and policies spell it: A-labels, lower case, no trailing dot. `None` for
/// something that is not a host name (it cannot have a policy, and must not become a file
/// name).
pub fn ascii_domain(domain: &str) -> Option<String> {
    let d = domain.trim_end_matches('.');
    let ascii = if d.is_ascii() {
        d.to_ascii_lowercase()
    } else {
        Name::from_utf8(d)
            .ok()?
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    crate::config::is_hostname(&ascii).then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_domains() {
        assert_eq!(ascii_domain("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(
            ascii_domain("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(ascii_domain("../etc"), None);
        assert_eq!(ascii_domain("a/b.example"), None);
        assert_eq!(ascii_domain(""), None);
    }
}

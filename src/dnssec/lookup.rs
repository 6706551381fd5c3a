//! The questions delivery asks, as typed answers that keep their security: MX, the addresses
//! of a host (A and AAAA), TLSA. A recursive resolver answers an alias with the CNAME chain
//! and the records at its end; the chain is followed here so the answer also names where the
//! records live (RFC 7672 2.2.3 needs that name for the TLSA base domain). The AD bit covers
//! the whole answer, chain included.

use super::{DnsError, Resolver, Response, Security};
use mail_auth::hickory_resolver::proto::rr::rdata::TLSA;
use mail_auth::hickory_resolver::proto::rr::{DNSClass, Name, RData, RecordType};
use std::net::IpAddr;

/// Longest CNAME chain followed (resolvers give up sooner).
const MAX_CHAIN: usize = 16;

/// The records of one type at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The name asked for.
    pub name: Name,
    /// Where the records are: `name`, or the end of its CNAME chain.
    pub owner: Name,
    /// Empty: NODATA, or NXDOMAIN when `nx_domain`.
    pub records: Vec<T>,
    /// The name (the end of the chain) does not exist.
    pub nx_domain: bool,
    pub security: Security,
}

impl<T> Answer<T> {
    /// `name` is an alias (a CNAME) of `owner`.
    pub fn is_alias(&self) -> bool {
        !self.owner.eq_ignore_root(&self.name)
    }

    fn map<U>(self, f: impl FnMut(T) -> Option<U>) -> Answer<U> {
        Answer {
            records: self.records.into_iter().filter_map(f).collect(),
            name: self.name,
            owner: self.owner,
            nx_domain: self.nx_domain,
            security: self.security,
        }
    }
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: Name,
}

impl Resolver {
    /// The `rtype` records at `name`, the CNAME chain followed.
    pub async fn records(&self, name: &Name, rtype: RecordType) -> Result<Answer<RData>, DnsError> {
        let response = self.query(name, rtype).await?;
        Ok(follow(name, rtype, response))
    }

    /// The MX records of `domain`.
    pub async fn mx(&self, domain: &Name) -> Result<Answer<Mx>, DnsError> {
        Ok(self
            .records(domain, RecordType::MX)
            .await?
            .map(|r| match r {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    exchange: mx.exchange,
                }),
                _ => None,
            }))
    }

    /// The addresses of `host`, IPv6 first, both families asked at once. Secure only when
    /// both answers are. One family's failure does not hide the other's addresses; with no
    /// address at all, the failure is the answer.
    pub async fn addresses(&self, host: &Name) -> Result<Answer<IpAddr>, DnsError> {
        let (v6, v4) = tokio::join!(
            self.records(host, RecordType::AAAA),
            self.records(host, RecordType::A)
        );
        let ip = |r: RData| match r {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        };
        match (v6.map(|a| a.map(ip)), v4.map(|a| a.map(ip))) {
            (Ok(mut v6), Ok(v4)) => {
                if v6.records.is_empty() {
                    v6.owner = v4.owner;
                }
                v6.records.extend(v4.records);
                v6.security = v6.security.and(v4.security);
                v6.nx_domain = v6.nx_domain && v4.nx_domain;
                Ok(v6)
            }
            (Ok(found), Err(e)) | (Err(e), Ok(found)) => {
                if found.records.is_empty() {
                    Err(e)
                } else {
                    Ok(found)
                }
            }
            (Err(e6), Err(e4)) => Err(if e4.is_bogus() { e4 } else { e6 }),
        }
    }

    /// The TLSA records at `name` (`_25._tcp.HOST`).
    pub async fn tlsa(&self, name: &Name) -> Result<Answer<TLSA>, DnsError> {
        Ok(self
            .records(name, RecordType::TLSA)
            .await?
            .map(|r| match r {
                RData::TLSA(t) => Some(t),
                _ => None,
            }))
    }
}

/// The answer to `name`/`rtype` in `response`: follow the CNAMEs from `name`, take the
/// records of the type at the end of the chain.
fn follow(name: &Name, rtype: RecordType, response: Response) -> Answer<RData> {
    let answers = &response.message.answers;
    let mut owner = name.clone();
    for _ in 0..MAX_CHAIN {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target)
                if r.dns_class == DNSClass::IN && r.name.eq_ignore_root(&owner) =>
            {
                Some(target.0.clone())
            }
            _ => None,
        });
        match next {
            Some(target) if rtype != RecordType::CNAME => owner = target,
            _ => break,
        }
    }
    let records = answers
        .iter()
        .filter(|r| {
            r.dns_class == DNSClass::IN && r.record_type() == rtype && r.name.eq_ignore_root(&owner)
        })
        .map(|r| r.data.clone())
        .collect();
    Answer {
        name: name.clone(),
        owner,
        records,
        nx_domain: response.nx_domain,
        security: response.security,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::op::{Message, OpCode};
    use mail_auth::hickory_resolver::proto::rr::rdata::{A, CNAME};
    use mail_auth::hickory_resolver::proto::rr::Record;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn response(records: Vec<Record>, secure: bool) -> Response {
        let mut message = Message::response(1, OpCode::Query);
        message.add_answers(records);
        Response {
            message,
            security: if secure {
                Security::Secure
            } else {
                Security::Insecure
            },
            nx_domain: false,
        }
    }

    #[test]
    fn follows_the_cname_chain_in_the_answer() {
        let records = vec![
            Record::from_rdata(
                n("mx.a.example."),
                60,
                RData::CNAME(CNAME(n("mail.b.example."))),
            ),
            Record::from_rdata(
                n("MAIL.b.example."),
                60,
                RData::CNAME(CNAME(n("host.c.example."))),
            ),
            Record::from_rdata(n("host.c.example."), 60, RData::A(A::new(192, 0, 2, 1))),
            // Not on the chain: ignored.
            Record::from_rdata(n("other.c.example."), 60, RData::A(A::new(192, 0, 2, 9))),
        ];
        let a = follow(&n("mx.a.example."), RecordType::A, response(records, true));
        assert_eq!(a.owner, n("host.c.example."));
        assert!(a.is_alias());
        assert_eq!(a.records, vec![RData::A(A::new(192, 0, 2, 1))]);
        assert_eq!(a.security, Security::Secure);
    }

    #[test]
    fn a_cname_loop_ends() {
        let records = vec![
            Record::from_rdata(n("a.example."), 60, RData::CNAME(CNAME(n("b.example.")))),
            Record::from_rdata(n("b.example."), 60, RData::CNAME(CNAME(n("a.example.")))),
        ];
        let a = follow(&n("a.example."), RecordType::A, response(records, false));
        assert!(a.records.is_empty());
        assert_eq!(a.security, Security::Insecure);
    }
}

//! DNSSEC-aware lookups (`dns.dnssec: trust-ad`): the relay does not validate signatures
//! itself; it asks its configured nameservers, which must be validating resolvers it trusts
//! (on loopback, or on a link it trusts), and believes the AD bit of their answers — the
//! Postfix model (`smtp_dns_support_level = dnssec`). hickory's resolver cannot be used for
//! this: its cache rebuilds answers without their header, so the AD bit of an answer is lost,
//! and a SERVFAIL becomes an error indistinguishable from a timeout.
//!
//! Every answer says whether it was authenticated ([`Security`]); a SERVFAIL, which a
//! validating resolver answers for a bogus RRset (RFC 4035 5.5), is an error of its own
//! ([`DnsError::ServFail`], with the resolver's Extended DNS Error when it gives one), distinct
//! from an insecure answer (no AD bit: unsigned zone or unsigned delegation) and from a
//! resolver that does not answer.
//!
//! # Layout
//! - [`wire`]: one question to one nameserver (UDP, TCP on truncation, deadlines).
//! - [`lookup`]: MX, A/AAAA and TLSA lookups, CNAME chains followed, as typed answers.
//!
//! Imports nothing of ours: `outbound` and `dane` ask it questions.

pub mod lookup;
pub mod wire;

use mail_auth::hickory_resolver::proto::op::{Message, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use mail_auth::hickory_resolver::proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
pub use wire::WireError;

/// Whether an answer was authenticated by the validating resolver (its AD bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// DNSSEC-validated: the records (or their absence) are as the zone's owner signed them.
    Secure,
    /// Not validated: the zone is unsigned, or reached through an unsigned delegation.
    Insecure,
}

impl Security {
    /// Both answers secure.
    pub fn and(self, other: Security) -> Security {
        if self == Security::Secure && other == Security::Secure {
            Security::Secure
        } else {
            Security::Insecure
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Security::Secure => "secure",
            Security::Insecure => "insecure",
        }
    }
}

/// An Extended DNS Error (RFC 8914) the resolver attached to its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ede {
    pub code: u16,
    pub text: String,
}

impl Ede {
    /// Codes 1–12 say that DNSSEC validation failed (bogus, expired or missing signatures,
    /// unsupported algorithms, missing keys or denial records).
    pub fn is_dnssec(&self) -> bool {
        (1..=12).contains(&self.code)
    }
}

impl std::fmt::Display for Ede {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.code {
            1 => "unsupported DNSKEY algorithm",
            2 => "unsupported DS digest type",
            5 => "DNSSEC indeterminate",
            6 => "DNSSEC bogus",
            7 => "signature expired",
            8 => "signature not yet valid",
            9 => "DNSKEY missing",
            10 => "RRSIGs missing",
            11 => "no zone key bit set",
            12 => "NSEC missing",
            _ => "",
        };
        match (name, self.text.is_empty()) {
            ("", true) => write!(f, "EDE {}", self.code),
            ("", false) => write!(f, "EDE {}: {}", self.code, self.text),
            (n, true) => write!(f, "{n}"),
            (n, false) => write!(f, "{n}: {}", self.text),
        }
    }
}

/// Why a question got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// SERVFAIL: the validating resolver found the answer bogus (failed DNSSEC validation), or
    /// could not get one from the zone's servers. Mail that depends on it waits.
    #[error("{server} answered SERVFAIL for {name} {rtype}{}", .ede.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    ServFail {
        server: SocketAddr,
        name: String,
        rtype: RecordType,
        ede: Option<Ede>,
    },
    /// REFUSED, NOTIMP, FORMERR…: the nameserver will not answer us.
    #[error("{server} answered {rcode} for {name} {rtype}")]
    Refused {
        server: SocketAddr,
        name: String,
        rtype: RecordType,
        rcode: String,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("'{0}' is not a domain name")]
    BadName(String),
    #[error("no nameserver to ask")]
    NoNameserver,
}

impl DnsError {
    /// The resolver said the answer failed DNSSEC validation (a SERVFAIL; with an Extended
    /// DNS Error that says so, or without any: a validating resolver's SERVFAIL is taken as
    /// bogus, as Postfix does).
    pub fn is_bogus(&self) -> bool {
        matches!(self, DnsError::ServFail { ede, .. } if ede.as_ref().is_none_or(Ede::is_dnssec))
    }
}

/// A response we believe: NOERROR or NXDOMAIN, with its AD bit.
#[derive(Debug, Clone)]
pub struct Response {
    pub message: Message,
    pub security: Security,
    pub nx_domain: bool,
}

/// The nameservers to ask and how patiently.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    /// For one exchange with one server (UDP, and again for TCP after truncation).
    timeout: Duration,
    /// Rounds over the servers that did not answer.
    attempts: usize,
}

impl Resolver {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration, attempts: usize) -> Resolver {
        Resolver {
            servers,
            timeout,
            attempts: attempts.max(1),
        }
    }

    /// `dns.nameservers`, else the nameservers of /etc/resolv.conf; 5 s per exchange, two
    /// rounds (as the shared resolver).
    pub fn from_config(nameservers: Option<&[SocketAddr]>) -> Result<Resolver, String> {
        let servers = match nameservers {
            Some(list) => list.to_vec(),
            None => system_nameservers()?,
        };
        if servers.is_empty() {
            return Err("no nameserver configured".into());
        }
        Ok(Resolver::new(servers, Duration::from_secs(5), 2))
    }

    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The nameservers off this host: their AD bit crosses a network, where anyone on the path
    /// can set it (RFC 6840 5.9). Only a link the operator trusts makes them safe to believe.
    pub fn off_host(&self) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .filter(|s| !s.ip().is_loopback())
            .copied()
            .collect()
    }

    /// Ask for `rtype` records at `name`. A server that answers SERVFAIL or refuses is not
    /// asked again; one that does not answer is asked again in the next round. The error
    /// returned is the most telling one seen (a SERVFAIL before a refusal before silence).
    pub async fn query(&self, name: &Name, rtype: RecordType) -> Result<Response, DnsError> {
        let query = Query::query(name.clone(), rtype);
        let mut done = vec![false; self.servers.len()];
        let mut worst: Option<DnsError> = None;
        for _ in 0..self.attempts {
            for (i, &server) in self.servers.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let error = match wire::exchange(server, &query, self.timeout).await {
                    Ok(message) => match classify(server, &query, message) {
                        Ok(response) => return Ok(response),
                        Err(e) => {
                            done[i] = true;
                            e
                        }
                    },
                    Err(e) => DnsError::Wire(e),
                };
                if worst.as_ref().is_none_or(|w| rank(&error) >= rank(w)) {
                    worst = Some(error);
                }
            }
        }
        Err(worst.unwrap_or(DnsError::NoNameserver))
    }
}

fn rank(e: &DnsError) -> u8 {
    match e {
        DnsError::ServFail { .. } => 3,
        DnsError::Refused { .. } => 2,
        _ => 1,
    }
}

/// A response as an answer or an error, by its RCODE.
fn classify(server: SocketAddr, query: &Query, message: Message) -> Result<Response, DnsError> {
    let security = if message.metadata.authentic_data {
        Security::Secure
    } else {
        Security::Insecure
    };
    let name = || query.name().to_ascii();
    match message.metadata.response_code {
        ResponseCode::NoError => Ok(Response {
            message,
            security,
            nx_domain: false,
        }),
        ResponseCode::NXDomain => Ok(Response {
            message,
            security,
            nx_domain: true,
        }),
        ResponseCode::ServFail => Err(DnsError::ServFail {
            server,
            name: name(),
            rtype: query.query_type(),
            ede: extended_error(&message),
        }),
        rcode => Err(DnsError::Refused {
            server,
            name: name(),
            rtype: query.query_type(),
            rcode: rcode.to_string(),
        }),
    }
}

/// The first Extended DNS Error option (EDNS option 15: a 16-bit code, then UTF-8 text).
fn extended_error(message: &Message) -> Option<Ede> {
    let edns = message.edns.as_ref()?;
    edns.options().options.iter().find_map(|(code, option)| {
        let (EdnsCode::Unknown(15), EdnsOption::Unknown(15, data)) = (code, option) else {
            return None;
        };
        let code = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
        let text: String = String::from_utf8_lossy(&data[2..])
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Some(Ede { code, text })
    })
}

/// The nameservers of /etc/resolv.conf (hickory reads it), each with its port.
fn system_nameservers() -> Result<Vec<SocketAddr>, String> {
    let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
    let mut list: Vec<SocketAddr> = Vec::new();
    for ns in config.name_servers() {
        let port = ns.connections.first().map_or(53, |c| c.port);
        let addr = SocketAddr::new(ns.ip, port);
        if !list.contains(&addr) {
            list.push(addr);
        }
    }
    Ok(list)
}

/// A domain name from mail (ASCII or UTF-8, with or without the final dot) as a fully
/// qualified DNS name.
pub fn fqdn(domain: &str) -> Result<Name, DnsError> {
    let d = domain.trim_end_matches('.');
    let bad = || DnsError::BadName(domain.chars().take(100).collect());
    if d.is_empty() {
        return Err(bad());
    }
    let mut name = if d.is_ascii() {
        Name::from_ascii(d)
    } else {
        Name::from_utf8(d)
    }
    .map_err(|_| bad())?;
    name.set_fqdn(true);
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::hickory_resolver::proto::op::{Edns, OpCode};
    use mail_auth::hickory_resolver::proto::rr::rdata::opt::OPT;

    fn servfail_with(ede: Option<(u16, &str)>) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        m.metadata.response_code = ResponseCode::ServFail;
        let mut edns = Edns::new();
        if let Some((code, text)) = ede {
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            *edns.options_mut() =
                OPT::new(vec![(EdnsCode::Unknown(15), EdnsOption::Unknown(15, data))]);
        }
        m.set_edns(edns);
        // Through the wire format, as a resolver's answer arrives.
        Message::from_vec(&m.to_vec().unwrap()).unwrap()
    }

    #[test]
    fn servfail_keeps_the_extended_error() {
        let q = Query::query(fqdn("_25._tcp.mx.example").unwrap(), RecordType::TLSA);
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let e = classify(
            server,
            &q,
            servfail_with(Some((6, "signature crypto failed"))),
        )
        .unwrap_err();
        assert!(e.is_bogus());
        assert_eq!(
            e.to_string(),
            "127.0.0.1:53 answered SERVFAIL for _25._tcp.mx.example. TLSA \
             (DNSSEC bogus: signature crypto failed)"
        );
        // A SERVFAIL that says it is not about DNSSEC (22: no reachable authority).
        let e = classify(server, &q, servfail_with(Some((22, "")))).unwrap_err();
        assert!(!e.is_bogus());
        let e = classify(server, &q, servfail_with(None)).unwrap_err();
        assert!(
            e.is_bogus(),
            "a bare SERVFAIL from a validating resolver is bogus"
        );
    }

    #[test]
    fn names() {
        assert_eq!(fqdn("Example.COM").unwrap().to_ascii(), "Example.COM.");
        assert_eq!(
            fqdn("bücher.example.").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
        assert_eq!(
            fqdn("_25._tcp.mx.example").unwrap().to_ascii(),
            "_25._tcp.mx.example."
        );
        assert!(fqdn("").is_err());
        assert!(fqdn("a..b").is_err());
    }
}

//! The DNS resolver every part of the relay shares (MX lookup, DKIM/SPF/DMARC checks,
//! verification): mail-auth's hickory resolver, pointed at `dns.nameservers` when configured
//! (tests point it at a DNS server on loopback), else at the system resolver configuration;
//! and the TXT lookup the transport security policies and the DNS doctor share.

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::MessageAuthenticator;
use std::net::SocketAddr;
use std::time::Duration;

/// Build the resolver. `None` means the system configuration (/etc/resolv.conf).
pub fn build(nameservers: Option<&[SocketAddr]>) -> Result<MessageAuthenticator, String> {
    match nameservers {
        None => MessageAuthenticator::new_system_conf()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}")),
        Some(list) => {
            let servers = list
                .iter()
                .map(|sa| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = sa.port();
                    NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut opts = ResolverOpts::default();
            opts.timeout = Duration::from_secs(5);
            opts.attempts = 2;
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
                .map_err(|e| format!("cannot build the DNS resolver: {e}"))
        }
    }
}

/// The TXT records at a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer<R> {
    /// NXDOMAIN or no TXT record.
    None,
    Records(Vec<R>),
    /// The lookup failed (timeout, SERVFAIL).
    Error(String),
}

/// The TXT records at `name`, each as its character strings, kept apart (the DNS doctor shows
/// how a DKIM record was split).
pub async fn txt_strings(resolver: &MessageAuthenticator, name: &str) -> TxtAnswer<Vec<Vec<u8>>> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.resolver().txt_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let records: Vec<Vec<Vec<u8>>> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect()),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                TxtAnswer::None
            } else {
                TxtAnswer::Records(records)
            }
        }
        // NXDOMAIN is one of the answers without records.
        Err(e) if e.is_no_records_found() => TxtAnswer::None,
        Err(e) => TxtAnswer::Error(e.to_string()),
    }
}

/// The TXT records at `name`, each as the concatenation of its strings (RFC 8461 3.1, RFC 8460
/// 3), bytes that are not UTF-8 replaced.
pub async fn txt_records(resolver: &MessageAuthenticator, name: &str) -> TxtAnswer<String> {
    match txt_strings(resolver, name).await {
        TxtAnswer::Records(records) => TxtAnswer::Records(
            records
                .iter()
                .map(|strings| strings.iter().map(|s| String::from_utf8_lossy(s)).collect())
                .collect(),
        ),
        TxtAnswer::None => TxtAnswer::None,
        TxtAnswer::Error(e) => TxtAnswer::Error(e),
    }
}

/// Why a host has no address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// NXDOMAIN: the name does not exist.
    NoSuchHost,
    /// The name exists but has neither AAAA nor A records.
    NoAddress,
    /// A lookup failed (and the other found nothing): what the resolver said.
    Failed(String),
}

/// The addresses of `host` at `port`: an IP literal (`192.0.2.1`, `[2001:db8::1]`) as it is,
/// else its AAAA then its A records, both asked at once, so a host whose IPv6 is broken is
/// still reached over IPv4 (and the other way round).
pub async fn addresses(
    resolver: &MessageAuthenticator,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, AddressError> {
    use std::net::IpAddr;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    let r = resolver.resolver();
    let (v6, v4) = tokio::join!(r.ipv6_lookup(fqdn.as_str()), r.ipv4_lookup(fqdn.as_str()));
    let mut list = Vec::new();
    let mut trouble = None;
    let mut nx = false;
    for answer in [
        v6.as_ref().map(|l| l.answers()),
        v4.as_ref().map(|l| l.answers()),
    ] {
        match answer {
            Ok(records) => list.extend(records.iter().filter_map(|r| match &r.data {
                RData::AAAA(a) => Some(SocketAddr::new(IpAddr::V6(a.0), port)),
                RData::A(a) => Some(SocketAddr::new(IpAddr::V4(a.0), port)),
                _ => None,
            })),
            Err(e) if e.is_nx_domain() => nx = true,
            Err(e) if e.is_no_records_found() => {}
            Err(e) => trouble = Some(e.to_string()),
        }
    }
    match (list.is_empty(), trouble) {
        (false, _) => Ok(list),
        (true, Some(e)) => Err(AddressError::Failed(e)),
        (true, None) if nx => Err(AddressError::NoSuchHost),
        (true, None) => Err(AddressError::NoAddress),
    }
}

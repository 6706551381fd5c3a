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

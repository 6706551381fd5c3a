//! The DNS resolver every part of the relay shares (MX lookup, DKIM/SPF/DMARC checks,
//! verification): mail-auth's hickory resolver, pointed at `dns.nameservers` when configured
//! (tests point it at a DNS server on loopback), else at the system resolver configuration.

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
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

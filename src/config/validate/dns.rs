//! `dns`: the name servers the relay asks (default: the system's) and how often `serve` runs
//! the DNS checks.

use super::{root, Checker, Fallback::Schema};
use crate::config::raw::RawDns;
use crate::config::{Dns, Dnssec};
use std::net::{IpAddr, SocketAddr};

pub(super) fn check(c: &mut Checker, raw: Option<&RawDns>) -> Dns {
    let none = RawDns::default();
    let d = raw.unwrap_or(&none);
    let p = root().key("dns");
    let nameservers = d.nameservers.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.trim();
                s.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                    .or_else(|| {
                        c.err(
                            &p.key("nameservers").index(i),
                            format!("'{s}' is not ip or ip:port"),
                        );
                        None
                    })
            })
            .collect()
    });
    let check_interval = c.duration(p.key("check_interval"), d.check_interval.as_ref(), Schema);
    Dns {
        nameservers,
        check_interval,
        dnssec: Dnssec::Off,
    }
}

//! `delivery`: how queued mail leaves (MX, a relay host, a directory), outbound TLS, the retry
//! schedule and its limits, timeouts and connection bounds, routes.

use super::{host_port, root, Checker, Fallback::Schema};
use crate::config::raw::RawDelivery;
use crate::config::units::parse_duration;
use crate::config::{Dane, Delivery, DeliveryMode, OutboundTls, RelayHost, TransportSecurity};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn check(c: &mut Checker, raw: Option<&RawDelivery>) -> Delivery {
    let none = RawDelivery::default();
    let d = raw.unwrap_or(&none);
    let p = root().key("delivery");
    let tls_options = [
        ("opportunistic", OutboundTls::Opportunistic),
        ("required", OutboundTls::Required),
        ("none", OutboundTls::None),
    ];
    let tls = c.choice(p.key("tls"), d.tls.as_ref(), &tls_options, Schema);
    let mode_name = c.text(p.key("mode"), d.mode.as_ref());
    let mode = match mode_name.trim() {
        "mx" => DeliveryMode::Mx,
        "directory" => match d.directory.as_ref() {
            Some(dir) => DeliveryMode::Directory(PathBuf::from(dir)),
            None => {
                c.err(&p.key("mode"), "mode directory needs delivery.directory");
                DeliveryMode::Mx
            }
        },
        "relay_host" => match d.relay_host.as_ref() {
            None => {
                c.err(
                    &p.key("mode"),
                    "mode relay_host needs a delivery.relay_host section",
                );
                DeliveryMode::Mx
            }
            Some(r) => {
                let rp = p.key("relay_host");
                let (host, port) = match r.address.as_deref().map(|a| (a, host_port(a.trim()))) {
                    Some((_, Some(hp))) => hp,
                    Some((a, None)) => {
                        c.err(&rp.key("address"), format!("'{a}' is not host:port"));
                        (String::new(), 0)
                    }
                    None => {
                        c.err(&rp, "address is missing");
                        (String::new(), 0)
                    }
                };
                let tls = c.choice(
                    rp.key("tls"),
                    r.tls.as_ref(),
                    &[
                        ("required", OutboundTls::Required),
                        ("starttls", OutboundTls::Required),
                        ("opportunistic", OutboundTls::Opportunistic),
                        ("implicit", OutboundTls::Implicit),
                        ("none", OutboundTls::None),
                    ],
                    Schema,
                );
                if r.username.is_some() != r.password_file.is_some() {
                    c.err(&rp, "username and password_file go together");
                }
                DeliveryMode::RelayHost(RelayHost {
                    host,
                    port,
                    tls,
                    username: r.username.clone(),
                    password_file: r.password_file.as_ref().map(PathBuf::from),
                    verify_certificate: c.value(rp.key("verify_certificate"), r.verify_certificate),
                })
            }
        },
        other => {
            c.err(
                &p.key("mode"),
                format!("'{other}' is not one of: mx, relay_host, directory"),
            );
            DeliveryMode::Mx
        }
    };
    let retry = match d.retry.as_ref() {
        // Written as a YAML flow list in the table: "[1m, 5m, ...]".
        None => c.default_with(&p.key("retry"), |list| {
            let items = list.strip_prefix('[')?.strip_suffix(']')?.split(',');
            items.map(|s| parse_duration(s).ok()).collect()
        }),
        Some(list) if list.is_empty() => {
            c.err(&p.key("retry"), "empty: give at least one interval");
            vec![Duration::from_secs(300)]
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    c.err(&p.key("retry").index(i), e);
                    None
                }
            })
            .collect(),
    };
    let mut routes = BTreeMap::new();
    for (domain, hop) in &d.routes {
        match host_port(hop.trim()) {
            Some(hp) => {
                routes.insert(domain.trim().trim_end_matches('.').to_ascii_lowercase(), hp);
            }
            None => c.err(
                &p.key("routes").key(domain),
                format!("'{hop}' is not host:port"),
            ),
        }
    }
    Delivery {
        mode,
        port: c.value(p.key("port"), d.port),
        tls,
        dane: Dane::Off,
        retry,
        max_age: c.duration(p.key("max_age"), d.max_age.as_ref(), Schema),
        delay_warning: c.duration(p.key("delay_warning"), d.delay_warning.as_ref(), Schema),
        max_connections: c.positive(p.key("max_connections"), d.max_connections, Schema),
        max_connections_per_domain: c.positive(
            p.key("max_connections_per_domain"),
            d.max_connections_per_domain,
            Schema,
        ),
        connect_timeout: c.duration(p.key("connect_timeout"), d.connect_timeout.as_ref(), Schema),
        command_timeout: c.duration(p.key("command_timeout"), d.command_timeout.as_ref(), Schema),
        host_retry_max: c.duration(p.key("host_retry_max"), d.host_retry_max.as_ref(), Schema),
        routes,
        security: TransportSecurity::defaults(""),
    }
}

//! `dkim-relay check-config`: the configuration loaded as `serve` would load it (a `Core`: keys,
//! certificate, secrets, resolver), then a summary of what it says; the shared limits' Redis is
//! asked once, and only warned about when it does not answer.

use super::{EXIT_FAIL, EXIT_OK};
use std::path::Path;

/// `check-config [-c FILE]`: load the configuration and everything it names (keys,
/// certificate, secrets), print a summary; exit 1 with every problem otherwise.
pub fn check_config_command(config: Option<&Path>) -> u8 {
    let path = crate::config::resolve_path(config);
    match crate::core::Core::load(&path) {
        Ok(core) => {
            let s = &core.settings;
            println!("{}: OK", path.display());
            println!("hostname: {}", s.hostname);
            println!("spool: {}", s.spool_dir.display());
            for l in &s.listeners {
                let tls = match l.tls {
                    crate::config::ListenerTls::None => "none",
                    crate::config::ListenerTls::StartTls => "starttls",
                    crate::config::ListenerTls::Implicit => "implicit",
                };
                println!("listener: {} (tls: {tls})", l.name());
            }
            for c in &s.clients {
                let who = match &c.kind {
                    crate::config::ClientKind::User { name, .. } => format!("user {name}"),
                    crate::config::ClientKind::Network(n) => format!("network {n}"),
                    crate::config::ClientKind::UnixUser(u) => format!("unix user {u}"),
                };
                println!(
                    "client: {who} ({} allowed sender patterns)",
                    c.allow_from.len()
                );
            }
            for (domain, list) in core.signers.domains() {
                let sel: Vec<String> = list
                    .iter()
                    .map(|s| format!("{} ({})", s.selector, s.algorithm.tag()))
                    .collect();
                println!("domain: {domain}: {}", sel.join(", "));
            }
            let mode = match &s.delivery.mode {
                crate::config::DeliveryMode::Mx => "mx".to_string(),
                crate::config::DeliveryMode::RelayHost(r) => {
                    format!("relay_host {}:{}", r.host, r.port)
                }
                crate::config::DeliveryMode::Directory(d) => {
                    format!("directory {}", d.display())
                }
            };
            println!("delivery: {mode}");
            let security = &s.delivery.security;
            if matches!(s.delivery.mode, crate::config::DeliveryMode::Mx) {
                let roots = core.trust.as_ref().map_or(0, |t| t.roots);
                println!(
                    "mta-sts: {} (trusted CA certificates: {roots})",
                    security.mta_sts.as_str()
                );
            }
            let r = &security.tls_reports;
            if r.enabled {
                println!("tls reports: on ({}, {})", r.organization, r.contact);
            } else {
                println!("tls reports: off");
            }
            if let Some(t) = &core.tagging {
                let domains: Vec<&str> = t.domains().collect();
                let n = t.secrets();
                println!(
                    "envelope tagging: {} (tags valid {}d, {n} secret{})",
                    domains.join(", "),
                    t.max_age_days(),
                    if n == 1 { "" } else { "s" }
                );
            }
            if let Some(cluster) = &s.cluster {
                check_cluster(cluster, core.redis_password.as_deref());
            }
            check_dnssec(&core);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_FAIL
        }
    }
}

/// check-config: say where limits are shared, and warn (without failing: Redis may come up
/// after the relay) when that Redis does not answer.
fn check_cluster(cluster: &crate::config::ClusterSettings, password: Option<&str>) {
    let url = crate::cluster::shown_url(&cluster.redis);
    let mode = match cluster.on_redis_down {
        crate::config::OnRedisDown::Local => "local",
        crate::config::OnRedisDown::Defer => "defer",
    };
    println!("cluster: limits shared through {url} (on_redis_down: {mode})");
    let reached = crate::cluster::client(cluster, password)
        .and_then(|client| crate::tools::cli::runtime()?.block_on(crate::cluster::probe(&client)));
    if let Err(e) = reached {
        eprintln!(
            "warning: cluster.redis {url} is unreachable ({e}); until it answers, the relay counts limits as on_redis_down: {mode} says"
        );
    }
}

/// check-config: whose AD bit the relay believes and whether DANE applies; a warning (not an
/// error: a trusted link to a resolver elsewhere is a legitimate setup) for each nameserver
/// off this host.
fn check_dnssec(core: &crate::core::Core) {
    let Some(resolver) = &core.dnssec else {
        println!("dnssec: off (DANE: off)");
        return;
    };
    let servers: Vec<String> = resolver
        .nameservers()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let dane = match core.settings.delivery.dane {
        crate::config::Dane::On => "on",
        crate::config::Dane::Off => "off",
    };
    println!(
        "dnssec: trust-ad, believing the AD bit of {} (DANE: {dane})",
        servers.join(", ")
    );
    for s in resolver.off_host() {
        eprintln!(
            "warning: dns.dnssec: trust-ad believes the AD bit of {s}, which is not on this host: anyone on the path to it can forge that bit; run a validating resolver beside the relay (docs/configuration.md, \"A validating resolver beside the relay\")"
        );
    }
}

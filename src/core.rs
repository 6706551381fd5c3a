//! The loaded configuration: validated settings with what they point at (signing keys, the TLS
//! certificate, the relay host password, the resolver), built all-or-nothing and swapped whole
//! on reload. Sessions and deliveries keep the snapshot they started with.

use crate::config::{ConfigError, ConfigErrors, DeliveryMode, Settings};
use crate::dkim::signer::{SelectorSpec, Signers, SigningOptions};
use mail_auth::MessageAuthenticator;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct Core {
    pub settings: Settings,
    pub signers: Signers,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub resolver: MessageAuthenticator,
    /// The DNSSEC-aware resolver, with `dns.dnssec: trust-ad` (MX, address and TLSA lookups
    /// whose AD bit counts).
    pub dnssec: Option<crate::dnssec::Resolver>,
    /// Read from `delivery.relay_host.password_file`.
    pub relay_password: Option<String>,
    /// The system roots plus `delivery.ca_file`, when MTA-STS (MX delivery) or TLS reports
    /// are on.
    pub trust: Option<crate::trust::Trust>,
    /// `envelope_tagging` with its secrets file read.
    pub tagging: Option<crate::backscatter::Tagging>,
    /// Read from `cluster.password_file`.
    pub redis_password: Option<String>,
}

impl Core {
    /// Load a configuration file and everything it names. Every problem is reported.
    pub fn load(path: &Path) -> Result<Core, ConfigErrors> {
        let settings = Settings::load(path)?;
        Self::from_settings(settings)
    }

    pub fn from_settings(settings: Settings) -> Result<Core, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        // The configured selectors, with active key rotations applied (dkim/rotation.rs).
        let specs: BTreeMap<String, Vec<SelectorSpec>> = crate::dkim::rotation::effective_selectors(
            &crate::dkim::rotation::state_dir(&settings.spool_dir),
            &configured_selectors(&settings),
        );
        let options = SigningOptions {
            relaxed_headers: settings.dkim.header_canon == crate::config::Canon::Relaxed,
            relaxed_body: settings.dkim.body_canon == crate::config::Canon::Relaxed,
            expire: settings.dkim.expire,
        };
        let signers = match Signers::load(&specs, options) {
            Ok(s) => s,
            Err(list) => {
                for (domain, i, e) in list {
                    let selector = specs
                        .get(&domain)
                        .and_then(|l| l.get(i))
                        .map(|s| s.selector.clone())
                        .unwrap_or_default();
                    let configured = settings
                        .dkim
                        .domains
                        .get(&domain)
                        .and_then(|l| l.iter().find(|s| s.selector == selector));
                    let path = match configured {
                        Some(s) => s.path.key("private_key"),
                        None => crate::config::KeyPath::default()
                            .key("dkim")
                            .key("domains")
                            .key(&domain),
                    };
                    errors.push(settings.origin.error(&path, e.to_string()));
                }
                Signers::default()
            }
        };
        let tls = match &settings.tls {
            Some(files) => match crate::tls::load(&files.certificate, &files.private_key) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(
                        settings
                            .origin
                            .error(&crate::config::KeyPath::default().key("tls"), e),
                    );
                    None
                }
            },
            None => None,
        };
        let relay_password = match &settings.delivery.mode {
            DeliveryMode::RelayHost(r) => r.password_file.as_deref().and_then(|p| {
                read_secret(
                    &settings,
                    p,
                    &["delivery", "relay_host", "password_file"],
                    &mut errors,
                )
            }),
            _ => None,
        };
        let security = &settings.delivery.security;
        // MTA-STS applies to MX delivery only; reports may be posted over HTTPS in any mode.
        let mx = matches!(settings.delivery.mode, DeliveryMode::Mx);
        let trust = if (mx && security.mta_sts != crate::config::MtaStsMode::Off)
            || security.tls_reports.enabled
        {
            match crate::trust::Trust::for_delivery(security.ca_file.as_deref()) {
                Ok(t) => Some(t),
                Err(e) => {
                    let key = if security.ca_file.is_some() {
                        "ca_file"
                    } else {
                        "mta_sts"
                    };
                    let kp = crate::config::KeyPath::default().key("delivery").key(key);
                    errors.push(settings.origin.error(&kp, e));
                    None
                }
            }
        } else {
            None
        };
        let tagging = settings.envelope_tagging.as_ref().and_then(|conf| {
            crate::backscatter::Tagging::load(conf)
                .map_err(|e| {
                    let kp = crate::config::KeyPath::default()
                        .key("envelope_tagging")
                        .key("secret_file");
                    errors.push(settings.origin.error(&kp, e));
                })
                .ok()
        });
        let redis_password = settings
            .cluster
            .as_ref()
            .and_then(|c| c.password_file.as_deref())
            .and_then(|p| read_secret(&settings, p, &["cluster", "password_file"], &mut errors));
        let resolver = match crate::resolver::build(settings.dns.nameservers.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(
                    settings
                        .origin
                        .error(&crate::config::KeyPath::default().key("dns"), e),
                );
                None
            }
        };
        let dnssec = match settings.dns.dnssec {
            crate::config::Dnssec::Off => None,
            crate::config::Dnssec::TrustAd => {
                crate::dnssec::Resolver::from_config(settings.dns.nameservers.as_deref())
                    .map_err(|e| {
                        let kp = crate::config::KeyPath::default().key("dns").key("dnssec");
                        errors.push(settings.origin.error(&kp, e));
                    })
                    .ok()
            }
        };
        match resolver {
            Some(resolver) if errors.is_empty() => Ok(Core {
                settings,
                signers,
                tls,
                resolver,
                dnssec,
                relay_password,
                trust,
                tagging,
                redis_password,
            }),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// The selectors `dkim.domains` lists, by signing domain, as the signers take them.
pub fn configured_selectors(settings: &Settings) -> BTreeMap<String, Vec<SelectorSpec>> {
    settings
        .dkim
        .domains
        .iter()
        .map(|(domain, list)| {
            let specs = list
                .iter()
                .map(|s| SelectorSpec {
                    selector: s.selector.clone(),
                    private_key: s.private_key.clone(),
                })
                .collect();
            (domain.clone(), specs)
        })
        .collect()
}

/// A password file's contents without the line break an editor leaves; an error against the
/// configuration key `at` that names it when it cannot be read.
fn read_secret(
    settings: &Settings,
    file: &Path,
    at: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(s) => Some(s.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => {
            let path = at
                .iter()
                .fold(crate::config::KeyPath::default(), |p, k| p.key(k));
            errors.push(
                settings
                    .origin
                    .error(&path, format!("cannot read {}: {e}", file.display())),
            );
            None
        }
    }
}

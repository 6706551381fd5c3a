//! Outbound transport security as configured: whether recipients' MTA-STS policies are honoured
//! (`delivery.mta_sts`), which CA certificates are trusted besides the system's
//! (`delivery.ca_file`), and TLS-RPT (`delivery.tls_reports`). Checked here from the raw file;
//! imports nothing of ours outside `config`.

use super::raw::RawDelivery;
use super::validate::Checker;
use super::{KeyPath, OutboundTls};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How the relay treats the MTA-STS policies recipients publish (RFC 8461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtaStsMode {
    /// Policies are not looked up.
    Off,
    /// Policies are looked up and checked, failures recorded and reported, but mail is
    /// delivered as without them (an `enforce` policy is treated like `testing`).
    Testing,
    /// Policies apply as published: `enforce` ones are enforced, `testing` ones reported.
    Enforce,
}

impl MtaStsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Off => "off",
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
        }
    }
}

/// TLS-RPT (RFC 8460): daily reports to the recipient domains that ask for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReports {
    pub enabled: bool,
    /// `organization-name` of the reports.
    pub organization: String,
    /// `contact-info` of the reports.
    pub contact: String,
}

/// `delivery.mta_sts`, `delivery.ca_file` and `delivery.tls_reports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportSecurity {
    pub mta_sts: MtaStsMode,
    /// PEM file of CA certificates trusted in addition to the system roots, for MTA-STS
    /// policy hosts, MX hosts under a policy, and HTTPS report endpoints.
    pub ca_file: Option<PathBuf>,
    pub tls_reports: TlsReports,
}

impl TransportSecurity {
    /// What a file without these keys means, for `hostname`.
    pub fn defaults(hostname: &str) -> TransportSecurity {
        TransportSecurity {
            mta_sts: MtaStsMode::Enforce,
            ca_file: None,
            tls_reports: TlsReports {
                enabled: false,
                organization: hostname.to_string(),
                contact: format!("postmaster@{hostname}"),
            },
        }
    }
}

/// Check the transport security keys of `delivery`. `tls` is `delivery.tls` as checked;
/// `signing_domains` the configured DKIM domains (reports must be signed).
pub(super) fn check(
    c: &mut Checker,
    raw: Option<&RawDelivery>,
    tls: OutboundTls,
    hostname: &str,
    signing_domains: &BTreeMap<String, Vec<super::SelectorConf>>,
) -> TransportSecurity {
    let p = KeyPath::default().key("delivery");
    let mut out = TransportSecurity::defaults(hostname);
    let configured = c.choice(
        p.key("mta_sts"),
        raw.and_then(|d| d.mta_sts.as_ref()),
        &[
            ("off", Some(MtaStsMode::Off)),
            ("testing", Some(MtaStsMode::Testing)),
            ("enforce", Some(MtaStsMode::Enforce)),
        ],
        None,
    );
    out.mta_sts = match (configured, tls) {
        // Without TLS there is nothing to check: MTA-STS is off unless asked for.
        (None, OutboundTls::None) => MtaStsMode::Off,
        (None, _) => MtaStsMode::Enforce,
        (Some(m), OutboundTls::None) if m != MtaStsMode::Off => {
            c.err(
                &p.key("mta_sts"),
                format!(
                    "'{}' needs TLS, but delivery.tls is none (set mta_sts: off, or tls: opportunistic)",
                    m.as_str()
                ),
            );
            MtaStsMode::Off
        }
        (Some(m), _) => m,
    };
    if let Some(file) = raw.and_then(|d| d.ca_file.as_ref()) {
        if file.trim().is_empty() {
            c.err(&p.key("ca_file"), "empty: give the path of a PEM file");
        } else {
            out.ca_file = Some(PathBuf::from(file.trim()));
        }
    }
    if let Some(r) = raw.and_then(|d| d.tls_reports.as_ref()) {
        let rp = p.key("tls_reports");
        let reports = &mut out.tls_reports;
        reports.enabled = r.enabled.unwrap_or(true);
        if let Some(org) = &r.organization {
            if org.trim().is_empty() || org.chars().any(char::is_control) {
                c.err(&rp.key("organization"), "give a name (one line)");
            } else {
                reports.organization = org.trim().to_string();
            }
        }
        if let Some(contact) = &r.contact {
            let contact = contact.trim();
            if contact.is_empty() || contact.chars().any(|ch| ch.is_control() || ch == ' ') {
                c.err(
                    &rp.key("contact"),
                    format!("'{contact}' is not an e-mail address or URI"),
                );
            } else {
                reports.contact = contact.to_string();
            }
        }
        // RFC 8460 5.3: a report sent by mail is DKIM-signed; the relay signs it with the key
        // of its host name's domain.
        let signable = signing_domains
            .keys()
            .any(|d| hostname == d || hostname.ends_with(&format!(".{d}")));
        if reports.enabled && !signable {
            c.err(
                &rp.key("enabled"),
                format!(
                    "TLS reports are sent DKIM-signed with the key of the host name's domain, \
                     and dkim.domains has no key for {hostname} or a parent domain of it"
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{MtaStsMode, Settings};
    use std::path::Path;

    const KEYED: &str =
        "hostname: relay.example.com\nlisteners:\n  - address: \"127.0.0.1:2525\"\n\
        dkim:\n  domains:\n    example.com:\n      - selector: s1\n        private_key: k.pem\n";

    fn parse(extra: &str) -> Result<Settings, Vec<String>> {
        Settings::parse(Path::new("t.yaml"), &format!("{KEYED}{extra}"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn defaults_enforce_without_reports() {
        let s = parse("").unwrap();
        let t = &s.delivery.security;
        assert_eq!(t.mta_sts, MtaStsMode::Enforce);
        assert!(!t.tls_reports.enabled);
        assert_eq!(t.tls_reports.contact, "postmaster@relay.example.com");
        assert_eq!(t.tls_reports.organization, "relay.example.com");
        let s = parse("delivery:\n  tls: none\n").unwrap();
        assert_eq!(s.delivery.security.mta_sts, MtaStsMode::Off);
    }

    #[test]
    fn modes_and_reports() {
        let s = parse(
            "delivery:\n  mta_sts: testing\n  ca_file: /etc/ca.pem\n  tls_reports:\n    \
             organization: Example Inc.\n    contact: tls@example.com\n",
        )
        .unwrap();
        let t = &s.delivery.security;
        assert_eq!(t.mta_sts, MtaStsMode::Testing);
        assert_eq!(t.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(t.tls_reports.enabled, "a tls_reports section means enabled");
        assert_eq!(t.tls_reports.organization, "Example Inc.");
        assert_eq!(t.tls_reports.contact, "tls@example.com");
    }

    #[test]
    fn contradictions_are_errors_with_their_line() {
        let e = parse("delivery:\n  tls: none\n  mta_sts: enforce\n").unwrap_err();
        assert!(e[0].starts_with("t.yaml:11:3: delivery.mta_sts"), "{e:?}");
        let e = parse("delivery:\n  mta_sts: sometimes\n").unwrap_err();
        assert!(e[0].contains("not one of: off, testing, enforce"), "{e:?}");
        let e = Settings::parse(
            Path::new("t.yaml"),
            "hostname: relay.other.org\nlisteners:\n  - address: \"127.0.0.1:2525\"\n\
             delivery:\n  tls_reports:\n    enabled: true\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("delivery.tls_reports.enabled"),
            "{e}"
        );
        assert!(parse("delivery:\n  tls_reports:\n    contact: a b\n").is_err());
    }
}

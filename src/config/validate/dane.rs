//! `dns.dnssec` (whether the AD bit of the nameservers' answers is believed) and
//! `delivery.dane` (whether recipients' TLSA records are honoured). DANE rests on DNSSEC:
//! `dane: on` without `dnssec: trust-ad` is a contradiction, and so is DANE without TLS.
//! Unset, DANE follows DNSSEC: a relay told to trust its validating resolver uses it.

use super::{root, Checker, Dane, Dnssec, OutboundTls};
use crate::config::raw::{RawDelivery, RawDns};

pub(super) fn check(
    c: &mut Checker,
    dns: Option<&RawDns>,
    delivery: Option<&RawDelivery>,
    tls: OutboundTls,
) -> (Dnssec, Dane) {
    let dnssec = c.choice(
        root().key("dns").key("dnssec"),
        dns.and_then(|d| d.dnssec.as_ref()),
        &[("off", Dnssec::Off), ("trust-ad", Dnssec::TrustAd)],
        Dnssec::Off,
    );
    let path = root().key("delivery").key("dane");
    let configured = c.choice(
        path.clone(),
        delivery.and_then(|d| d.dane.as_ref()),
        &[("off", Some(Dane::Off)), ("on", Some(Dane::On))],
        None,
    );
    let dane = match (configured, dnssec, tls) {
        (None, Dnssec::TrustAd, t) if t != OutboundTls::None => Dane::On,
        (None, _, _) | (Some(Dane::Off), _, _) => Dane::Off,
        (Some(Dane::On), Dnssec::Off, _) => {
            c.err(
                &path,
                "on needs dns.dnssec: trust-ad (TLSA records count only when DNSSEC-validated, \
                 by a validating resolver the relay trusts)",
            );
            Dane::Off
        }
        (Some(Dane::On), _, OutboundTls::None) => {
            c.err(
                &path,
                "on needs TLS, but delivery.tls is none (set dane: off, or tls: opportunistic)",
            );
            Dane::Off
        }
        (Some(Dane::On), _, _) => Dane::On,
    };
    (dnssec, dane)
}

#[cfg(test)]
mod tests {
    use crate::config::{Dane, Dnssec, Settings};
    use std::path::Path;

    const BASE: &str = "hostname: relay.example.com\nlisteners:\n  - address: \"127.0.0.1:2525\"\n";

    fn parse(extra: &str) -> Result<Settings, Vec<String>> {
        Settings::parse(Path::new("t.yaml"), &format!("{BASE}{extra}"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    fn modes(extra: &str) -> (Dnssec, Dane) {
        let s = parse(extra).unwrap();
        (s.dns.dnssec, s.delivery.dane)
    }

    #[test]
    fn dane_follows_dnssec_unless_told() {
        assert_eq!(modes(""), (Dnssec::Off, Dane::Off));
        assert_eq!(
            modes("dns:\n  dnssec: trust-ad\n"),
            (Dnssec::TrustAd, Dane::On)
        );
        assert_eq!(
            modes("dns:\n  dnssec: trust-ad\ndelivery:\n  dane: off\n"),
            (Dnssec::TrustAd, Dane::Off)
        );
        assert_eq!(
            modes("dns:\n  dnssec: trust-ad\ndelivery:\n  dane: on\n"),
            (Dnssec::TrustAd, Dane::On)
        );
        assert_eq!(
            modes("dns:\n  dnssec: trust-ad\ndelivery:\n  tls: none\n"),
            (Dnssec::TrustAd, Dane::Off)
        );
    }

    #[test]
    fn contradictions_are_errors_with_their_line() {
        let e = parse("delivery:\n  dane: on\n").unwrap_err();
        assert!(e[0].starts_with("t.yaml:5:3: delivery.dane"), "{e:?}");
        assert!(e[0].contains("dns.dnssec: trust-ad"), "{e:?}");
        let e =
            parse("dns:\n  dnssec: trust-ad\ndelivery:\n  tls: none\n  dane: on\n").unwrap_err();
        assert!(e[0].contains("delivery.tls is none"), "{e:?}");
        let e = parse("dns:\n  dnssec: yes\n").unwrap_err();
        assert!(e[0].contains("not one of: off, trust-ad"), "{e:?}");
        let e = parse("delivery:\n  dane: maybe\n").unwrap_err();
        assert!(e[0].contains("not one of: off, on"), "{e:?}");
    }
}

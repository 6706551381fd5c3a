//! `envelope_tagging`: domains, secrets file and tag lifetime. The secrets file itself is read
//! with the keys (`core`), so that `Settings` stays a pure reading of the YAML.

use super::{is_hostname, parse_duration, root, Checker, EnvelopeTagging, PathBuf};
use crate::config::raw::RawEnvelopeTagging;

/// A tag names its expiry day modulo 1000; a year is as long as a bounce can sensibly take.
const MAX_DAYS: u64 = 365;

pub(super) fn check(c: &mut Checker, raw: Option<&RawEnvelopeTagging>) -> Option<EnvelopeTagging> {
    let raw = raw?;
    let p = root().key("envelope_tagging");
    let mut domains: Vec<String> = Vec::new();
    if raw.domains.is_empty() {
        c.err(
            &p.key("domains"),
            "empty: list the envelope sender domains whose mail leaves tagged",
        );
    }
    for (i, d) in raw.domains.iter().enumerate() {
        let name = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if !is_hostname(&name) {
            c.err(
                &p.key("domains").index(i),
                format!("'{d}' is not a domain name"),
            );
        } else if domains.contains(&name) {
            c.err(&p.key("domains").index(i), format!("'{d}' is listed twice"));
        } else {
            domains.push(name);
        }
    }
    let secret_file = match &raw.secret_file {
        Some(f) if !f.trim().is_empty() => PathBuf::from(f.trim()),
        _ => {
            c.err(
                &p,
                "secret_file is missing (a file of secrets, one per line: `openssl rand -hex 32`)",
            );
            PathBuf::new()
        }
    };
    // A tag carries a day number: round up to whole days.
    let days_of = |d: std::time::Duration| {
        let days = d.as_secs().div_ceil(86_400);
        (d.as_secs() >= 86_400 && days <= MAX_DAYS).then_some(days as u16)
    };
    let ap = p.key("max_age");
    let max_age_days = match raw.max_age.as_ref().map(|s| parse_duration(s)) {
        None => None,
        Some(Err(e)) => {
            c.err(&ap, e);
            None
        }
        Some(Ok(d)) => days_of(d).or_else(|| {
            c.err(
                &ap,
                format!("must be between 1d and {MAX_DAYS}d (a tag carries a day number)"),
            );
            None
        }),
    };
    let max_age_days = match max_age_days {
        Some(days) => days,
        None => c.default_with(&ap, |s| days_of(parse_duration(s).ok()?)),
    };
    let mut accept_bounces_from = Vec::new();
    for (i, net) in raw.accept_bounces_from.iter().enumerate() {
        match net.trim().parse::<ipnet::IpNet>().or_else(|_| {
            net.trim()
                .parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
        }) {
            Ok(n) => accept_bounces_from.push(n),
            Err(_) => c.err(
                &p.key("accept_bounces_from").index(i),
                format!("'{net}' is not an IP address or network (203.0.113.7, 2001:db8::/48)"),
            ),
        }
    }
    Some(EnvelopeTagging {
        domains,
        secret_file,
        max_age_days,
        accept_bounces_from,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use std::path::Path;

    const MINIMAL: &str =
        "hostname: relay.example.com\nlisteners:\n  - address: \"127.0.0.1:2525\"\n";

    fn parse(extra: &str) -> Result<Settings, Vec<String>> {
        Settings::parse(Path::new("t.yaml"), &format!("{MINIMAL}{extra}"))
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn valid_section() {
        let s = parse(
            "envelope_tagging:\n  domains: [Example.com., bounces.example.org]\n  secret_file: /etc/k\n  max_age: 36h\n",
        )
        .unwrap();
        let t = s.envelope_tagging.unwrap();
        assert_eq!(t.domains, ["example.com", "bounces.example.org"]);
        assert_eq!(t.secret_file, Path::new("/etc/k"));
        assert_eq!(t.max_age_days, 2);
        let s =
            parse("envelope_tagging:\n  domains: [example.com]\n  secret_file: /etc/k\n").unwrap();
        assert_eq!(s.envelope_tagging.unwrap().max_age_days, 7);
        assert!(parse("").unwrap().envelope_tagging.is_none());
    }

    #[test]
    fn every_problem_with_its_line() {
        let e = parse(
            "envelope_tagging:\n  domains: [\"exa mple.com\", a.example, a.example]\n  max_age: 12h\n  secrt_file: x\n",
        )
        .unwrap_err();
        let has = |prefix: &str| e.iter().any(|l| l.starts_with(prefix));
        assert!(
            has("t.yaml:7:3: envelope_tagging.secrt_file: unknown key"),
            "{e:?}"
        );
        let e = parse(
            "envelope_tagging:\n  domains:\n    - exa mple.com\n    - a.example\n    - a.example\n  max_age: 12h\n",
        )
        .unwrap_err();
        let has = |prefix: &str| e.iter().any(|l| l.starts_with(prefix));
        assert!(
            has("t.yaml:4:1: envelope_tagging: secret_file is missing"),
            "{e:?}"
        );
        assert!(
            has("t.yaml:6:5: envelope_tagging.domains[0]: 'exa mple.com' is not a domain name"),
            "{e:?}"
        );
        assert!(
            has("t.yaml:8:5: envelope_tagging.domains[2]: 'a.example' is listed twice"),
            "{e:?}"
        );
        assert!(
            has("t.yaml:9:3: envelope_tagging.max_age: must be between 1d and 365d"),
            "{e:?}"
        );
        assert_eq!(e.len(), 4, "{e:?}");
        let e = parse("envelope_tagging:\n  domains: []\n  secret_file: /k\n  max_age: 400d\n")
            .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }
}

//! `dkim`: the signing domains with their selectors and keys (the key files themselves are read
//! with the `Core`), canonicalization, signature lifetime, independent verification.

use super::{is_hostname, root, Checker, Fallback::Schema};
use crate::config::raw::RawDkim;
use crate::config::units::parse_duration;
use crate::config::{Canon, Dkim, SelectorConf};
use std::collections::BTreeMap;

pub(super) fn check(c: &mut Checker, raw: Option<&RawDkim>) -> Dkim {
    let p = root().key("dkim");
    let mut domains = BTreeMap::new();
    let mut expire = None;
    let independent_verify_max = c.size(
        p.key("independent_verify_max"),
        raw.and_then(|d| d.independent_verify_max.as_ref()),
        Schema,
    );
    if let Some(d) = raw {
        for (domain, selectors) in &d.domains {
            let dp = p.key("domains").key(domain);
            let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if !is_hostname(&name) {
                c.err(&dp, format!("'{domain}' is not a domain name"));
                continue;
            }
            if selectors.is_empty() {
                c.err(
                    &dp,
                    "no selectors: list at least one { selector, private_key }",
                );
            }
            let mut list = Vec::new();
            for (i, s) in selectors.iter().enumerate() {
                let sp = dp.index(i);
                match (&s.selector, &s.private_key) {
                    (Some(sel), Some(key)) => {
                        if !is_hostname(sel) {
                            c.err(
                                &sp.key("selector"),
                                format!("'{sel}' is not a valid selector"),
                            );
                        }
                        if list.iter().any(|x: &SelectorConf| &x.selector == sel) {
                            c.err(
                                &sp.key("selector"),
                                format!("selector '{sel}' is listed twice"),
                            );
                        }
                        list.push(SelectorConf {
                            selector: sel.clone(),
                            private_key: key.into(),
                            path: sp,
                        });
                    }
                    (None, _) => c.err(&sp, "selector is missing"),
                    (_, None) => c.err(&sp, "private_key is missing"),
                }
            }
            domains.insert(name, list);
        }
        expire = d.expire.as_ref().and_then(|e| match parse_duration(e) {
            Ok(d) => Some(d),
            Err(m) => {
                c.err(&p.key("expire"), m);
                None
            }
        });
    }
    // `header/body`, each relaxed or simple; the body's is simple when not given (RFC 6376).
    let canon_of = |canon: &str| {
        let parse = |s: &str| match s.trim() {
            "relaxed" => Some(Canon::Relaxed),
            "simple" => Some(Canon::Simple),
            _ => None,
        };
        let (h, b) = canon.split_once('/').unwrap_or((canon, "simple"));
        Some((parse(h)?, parse(b)?))
    };
    let cp = p.key("canonicalization");
    let written = raw.and_then(|d| d.canonicalization.as_ref());
    let mut given = written.and_then(|w| canon_of(w));
    if let (Some(canon), None) = (written, given) {
        c.err(
            &cp,
            format!("'{canon}' is not header/body with relaxed or simple (relaxed/relaxed)"),
        );
    }
    if given.is_none() {
        // (The placeholder stands only when the table's default does not parse: an error.)
        given = c.schema_default(&cp, canon_of);
    }
    let (header_canon, body_canon) = given.unwrap_or((Canon::Relaxed, Canon::Relaxed));
    Dkim {
        domains,
        header_canon,
        body_canon,
        expire,
        independent_verify_max,
    }
}

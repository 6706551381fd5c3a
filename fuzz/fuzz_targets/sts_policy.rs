//! What a recipient domain publishes for MTA-STS and TLS-RPT is hostile input too: the
//! `_mta-sts` and `_smtp._tls` TXT records (`record::parse`, `rua::parse`) and the policy body
//! (`StsPolicy::parse`). Nothing may panic; an accepted policy keeps its bounds (a mode, a
//! max_age of at most a year, mx patterns unless the mode is none, each pattern allowing the
//! host it names) and quotes its text line for line.
#![no_main]

use dkim_relay::tls_policy::mta_sts::policy::{MxPattern, StsMode, StsPolicy, MAX_AGE_LIMIT};
use dkim_relay::tls_policy::mta_sts::record;
use dkim_relay::tls_policy::report::rua;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = record::parse(text) {
        assert!((1..=32).contains(&r.id.len()));
        assert!(r.id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    if let Ok(list) = rua::parse(text) {
        for d in list {
            match d {
                rua::Destination::Mail(a) => assert!(a.contains('@')),
                rua::Destination::Https(u) => assert!(u.to_ascii_lowercase().starts_with("https:")),
            }
        }
    }
    let Ok(p) = StsPolicy::parse(text) else {
        return;
    };
    assert!(p.max_age <= MAX_AGE_LIMIT);
    assert!(p.mode == StsMode::None || !p.mx.is_empty());
    for m in &p.mx {
        match m {
            MxPattern::Exact(h) => assert!(p.allows(h)),
            MxPattern::Wildcard(parent) => assert!(p.allows(&format!("mx.{parent}"))),
        }
    }
    assert!(!p.lines().is_empty());
    assert!(p.lines().iter().all(|l| !l.contains('\n')));
});

//! The header policy: a header section (any bytes) either passes with exactly one plain From
//! address, its fields covering the section byte for byte, or is refused with a reason. The
//! From parser alone is fuzzed on the same bytes.
#![no_main]

use dkim_relay::smtp::header::{check_section, from_address, SINGLETONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, section) = match data.split_first() {
        Some((f, rest)) => (*f, rest),
        None => return,
    };
    let smtputf8 = flags & 1 == 1;
    match check_section(section, smtputf8) {
        Ok(checked) => {
            let total: usize = checked.fields.iter().map(|f| f.raw.len()).sum();
            assert_eq!(total, section.len(), "fields do not cover the section");
            assert_eq!(checked.fields.iter().filter(|f| f.is("From")).count(), 1);
            for name in SINGLETONS {
                assert!(checked.fields.iter().filter(|f| f.is(name)).count() <= 1);
            }
            for f in &checked.fields {
                assert!(!f.name.is_empty() && f.name.bytes().all(|b| (33..=126).contains(&b)));
                assert!(!f.raw.contains(&0));
            }
            check_address(&checked.from);
            assert!(smtputf8 || checked.from.is_ascii());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(address) = from_address(section) {
        check_address(&address);
    }
});

fn check_address(a: &str) {
    let (local, domain) = a.rsplit_once('@').expect("address without @");
    assert!(!local.is_empty() && !domain.is_empty(), "{a:?}");
    assert!(
        !a.contains(['<', '>', '"', ',', ';', ' ', '\r', '\n']),
        "{a:?}"
    );
    assert_eq!(a.matches('@').count(), 1, "{a:?}");
}

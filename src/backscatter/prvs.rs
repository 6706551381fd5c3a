//! The BATV "prvs" tag (draft-levine-smtp-batv-01, §4): `prvs=KDDDSSSSSS=local@domain`, where
//! K is one digit naming the key, DDD the day the tag expires (days since 1970-01-01, modulo
//! 1000) and SSSSSS six hex digits of a keyed hash of `KDDD` and the address. We key the hash
//! with HMAC-SHA256 (the draft leaves the hash to the signer, who is also the only verifier).
//!
//! Receivers may change the case of an address they hand back (some lower-case whole
//! addresses), so the hash covers the address lower-cased, the hex and the `prvs` prefix are
//! read in any case, and the local part keeps the case it was sent with.
//!
//! Pure: the time is always passed in as a day number. Imports nothing else of ours.

use aws_lc_rs::{constant_time, digest, hmac};

/// The tag type of the simple private signature scheme, as it starts a tagged local part.
pub const PREFIX: &str = "prvs=";

/// Characters a tag adds to a local part: `prvs=` + `KDDDSSSSSS` + `=`.
pub const TAG_LEN: usize = PREFIX.len() + 10 + 1;

/// RFC 5321 §4.5.3.1.1: the longest local part a receiver must accept.
const MAX_LOCAL_PART: usize = 64;

/// One tagging secret.
pub struct Key {
    hmac: hmac::Key,
    /// The K digit of the tags it makes: derived from the secret, so it stays the same when
    /// the order of the secrets changes during a key rotation.
    id: u8,
}

impl Key {
    pub fn new(secret: &[u8]) -> Key {
        let id = digest::digest(&digest::SHA256, secret).as_ref()[0] % 10;
        Key {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret),
            id,
        }
    }

    /// The digit that names this key in a tag.
    #[cfg(test)]
    pub(crate) fn id(&self) -> u8 {
        self.id
    }

    /// The first three bytes of HMAC-SHA256(secret, "KDDD" + address in lower case).
    fn mac(&self, head: &[u8; 4], local: &str, domain: &str) -> [u8; 3] {
        let mut ctx = hmac::Context::with_key(&self.hmac);
        ctx.update(head);
        ctx.update(local.to_ascii_lowercase().as_bytes());
        ctx.update(b"@");
        ctx.update(domain.to_ascii_lowercase().as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 3];
        out.copy_from_slice(&tag.as_ref()[..3]);
        out
    }
}

/// `KDDD` of a tag.
fn head(key_id: u8, expiry_day: u64) -> [u8; 4] {
    let ddd = (expiry_day % 1000) as u16;
    [
        b'0' + key_id % 10,
        b'0' + (ddd / 100) as u8,
        b'0' + (ddd / 10 % 10) as u8,
        b'0' + (ddd % 10) as u8,
    ]
}

/// The tagged form of `local@domain`, valid until the end of (UTC) day `expiry_day`; `None`
/// when the address cannot carry a tag (a quoted local part, or one that the tag would push
/// over the 64 characters receivers must accept).
pub fn tag(key: &Key, local: &str, domain: &str, expiry_day: u64) -> Option<String> {
    if local.is_empty()
        || local.starts_with('"')
        || local.len() + TAG_LEN > MAX_LOCAL_PART
        || domain.is_empty()
    {
        return None;
    }
    let head = head(key.id, expiry_day);
    let mac = key.mac(&head, local, domain);
    let mut out = String::with_capacity(TAG_LEN + local.len() + 1 + domain.len());
    out.push_str(PREFIX);
    for b in head {
        out.push(char::from(b));
    }
    for b in mac {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('=');
    out.push_str(local);
    out.push('@');
    out.push_str(domain);
    Some(out)
}

/// A local part that carries a prvs tag, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged<'a> {
    pub key_id: u8,
    /// DDD: the expiry day modulo 1000.
    pub day: u16,
    mac: [u8; 3],
    /// The local part as it was before tagging.
    pub local: &'a str,
}

/// Does `local` start with a prvs tag (in any case)? `Some(Err(()))`: it claims to (`prvs=`)
/// but the tag is malformed.
pub fn parse(local: &str) -> Option<Result<Tagged<'_>, ()>> {
    let rest = local
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &local[PREFIX.len()..])?;
    Some(parse_tag(rest))
}

fn parse_tag(rest: &str) -> Result<Tagged<'_>, ()> {
    let b = rest.as_bytes();
    if b.len() < 12 || b[10] != b'=' || !b[..4].iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let hex = |i: usize| -> Result<u8, ()> {
        let s = std::str::from_utf8(&b[i..i + 2]).map_err(|_| ())?;
        u8::from_str_radix(s, 16).map_err(|_| ())
    };
    let mac = [hex(4)?, hex(6)?, hex(8)?];
    let digit = |i: usize| u16::from(b[i] - b'0');
    Ok(Tagged {
        key_id: b[0] - b'0',
        day: digit(1) * 100 + digit(2) * 10 + digit(3),
        mac,
        local: &rest[11..],
    })
}

/// What a tag says when checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Made by one of the keys, for this address, and not expired.
    Valid,
    /// Made by one of the keys for this address, but its day is outside the validity window.
    Expired,
    /// No key made it for this address (a guess, a tag for another address, or a key that
    /// was removed).
    Invalid,
}

/// Check a parsed tag of `domain` against `keys` on day `today` (days since 1970-01-01). A tag
/// is valid from the day it was made until the end of its expiry day; `max_age_days` bounds
/// how far ahead that day may be (with DDD modulo 1000, a tag from far in the past is
/// otherwise indistinguishable from one far in the future).
pub fn check(
    tagged: &Tagged<'_>,
    domain: &str,
    keys: &[Key],
    today: u64,
    max_age_days: u16,
) -> Check {
    let head = head(tagged.key_id, u64::from(tagged.day));
    let made_by_us = keys.iter().filter(|k| k.id == tagged.key_id).any(|k| {
        constant_time::verify_slices_are_equal(&k.mac(&head, tagged.local, domain), &tagged.mac)
            .is_ok()
    });
    if !made_by_us {
        return Check::Invalid;
    }
    let ahead = (u64::from(tagged.day) + 1000 - today % 1000) % 1000;
    if ahead <= u64::from(max_age_days) {
        Check::Valid
    } else {
        Check::Expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 20_600; // 2026-05-27

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef")
    }

    fn parsed(addr: &str) -> (Tagged<'_>, &str) {
        let (local, domain) = addr.rsplit_once('@').unwrap();
        (parse(local).unwrap().unwrap(), domain)
    }

    #[test]
    fn format_is_the_drafts() {
        let k = key();
        let t = tag(&k, "App", "Example.com", DAY + 7).unwrap();
        let (prefix, rest) = t.split_at(PREFIX.len());
        assert_eq!(prefix, "prvs=");
        assert_eq!(&rest[..1], &k.id().to_string());
        assert_eq!(&rest[1..4], "607");
        assert!(rest[4..10]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(&rest[10..], "=App@Example.com");
    }

    #[test]
    fn a_tag_verifies_until_its_day_and_not_after() {
        let k = key();
        let t = tag(&k, "app", "example.com", DAY + 7).unwrap();
        let (p, d) = parsed(&t);
        for today in DAY..=DAY + 7 {
            assert_eq!(
                check(&p, d, &[key()], today, 7),
                Check::Valid,
                "day {today}"
            );
        }
        assert_eq!(check(&p, d, &[key()], DAY + 8, 7), Check::Expired);
        assert_eq!(check(&p, d, &[key()], DAY + 400, 7), Check::Expired);
        // An expiry further ahead than max_age allows was not made by us with this max_age.
        assert_eq!(check(&p, d, &[key()], DAY - 1, 7), Check::Expired);
    }

    #[test]
    fn day_numbers_wrap_at_1000() {
        let k = key();
        let made = 20_998; // expiry 21_005 -> DDD 005
        let t = tag(&k, "app", "example.com", made + 7).unwrap();
        assert!(t.starts_with(&format!("prvs={}005", k.id())), "{t}");
        let (p, d) = parsed(&t);
        assert_eq!(check(&p, d, &[key()], made, 7), Check::Valid);
        assert_eq!(check(&p, d, &[key()], made + 7, 7), Check::Valid);
        assert_eq!(check(&p, d, &[key()], made + 8, 7), Check::Expired);
    }

    #[test]
    fn receivers_may_change_case() {
        let t = tag(&key(), "App.Team", "example.com", DAY + 7).unwrap();
        let upper = t.to_ascii_uppercase();
        let (p, d) = parsed(&upper);
        assert_eq!(p.local, "APP.TEAM");
        assert_eq!(check(&p, d, &[key()], DAY, 7), Check::Valid);
    }

    #[test]
    fn wrong_mac_address_or_key_is_invalid() {
        let t = tag(&key(), "app", "example.com", DAY + 7).unwrap();
        // Flip the last hex digit.
        let mut bad = t.clone().into_bytes();
        bad[14] = if bad[14] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        let (p, d) = parsed(&bad);
        assert_eq!(check(&p, d, &[key()], DAY, 7), Check::Invalid);
        // The same tag on another address.
        let other = t.replace("=app@", "=ceo@");
        let (p, d) = parsed(&other);
        assert_eq!(check(&p, d, &[key()], DAY, 7), Check::Invalid);
        let (p, _) = parsed(&t);
        assert_eq!(check(&p, "example.org", &[key()], DAY, 7), Check::Invalid);
        // Another secret.
        let (p, d) = parsed(&t);
        let stranger = Key::new(b"another secret, 32 bytes long...");
        let keys = [stranger];
        assert_eq!(check(&p, d, &keys, DAY, 7), Check::Invalid);
    }

    #[test]
    fn every_listed_key_verifies() {
        let old = Key::new(b"the old secret that signed before");
        let t = tag(&old, "app", "example.com", DAY + 7).unwrap();
        let (p, d) = parsed(&t);
        let keys = [
            Key::new(b"the new secret that signs from now"),
            Key::new(b"the old secret that signed before"),
        ];
        assert_eq!(check(&p, d, &keys, DAY, 7), Check::Valid);
        assert_eq!(check(&p, d, &keys[..1], DAY, 7), Check::Invalid);
    }

    #[test]
    fn malformed_tags() {
        for local in [
            "prvs=",
            "prvs=1234abcdef",
            "prvs=1234abcdef=",
            "prvs=1234abcdeg=app",
            "prvs=12x4abcdef=app",
            "prvs=1234abcdefapp",
            "PRVS=1234abc=app",
        ] {
            assert_eq!(parse(local), Some(Err(())), "{local}");
        }
        assert_eq!(parse("app"), None);
        assert_eq!(parse("prv"), None);
        assert_eq!(parse("prvsx=1234abcdef=app"), None);
        assert!(parse("Prvs=1234ABCDEF=app").unwrap().is_ok());
    }

    #[test]
    fn addresses_that_cannot_carry_a_tag() {
        let k = key();
        assert!(tag(&k, "\"a b\"", "example.com", DAY).is_none());
        let long = "a".repeat(64 - TAG_LEN + 1);
        assert!(tag(&k, &long, "example.com", DAY).is_none());
        let fits = "a".repeat(64 - TAG_LEN);
        let t = tag(&k, &fits, "example.com", DAY).unwrap();
        assert_eq!(t.split_once('@').unwrap().0.len(), 64);
    }
}

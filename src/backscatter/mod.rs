//! Backscatter defence (BATV): every message of a tagged domain leaves with a tagged envelope
//! sender, `prvs=KDDDSSSSSS=user@example.com`, so a bounce that comes back to an untagged,
//! wrongly tagged or expired address of that domain is provably backscatter from forged mail.
//!
//! - `prvs`: the tag format and its keyed hash (pure, the day passed in).
//! - `secret`: the secrets file (first line signs, every line verifies).
//! - this file: [`Tagging`] (which addresses get a tag, and the verdict on a bounce) and
//!   [`WireEnvelope`] (the envelope of one delivery attempt as it goes on the wire).
//! - `policy`: the Postfix policy delegation protocol (pure).
//! - `server`, `command`: `dkim-relay bounce-check`, the policy daemon and the one-shot check.
//!
//! Tags go on at delivery time and never into the spool: the spool keeps the addresses as
//! submitted, so logs, `queue show` and the relay's own DSNs use those, and a key change or a
//! retry days later gets a fresh tag.
//!
//! `prvs`, `secret`, `policy` and this file import nothing of ours but the validated
//! `config::EnvelopeTagging`; `server` and `command` add listeners, signals and metrics.

pub mod command;
pub(crate) mod policy;
pub(crate) mod prvs;
pub mod secret;
mod server;

use secret::Keys;
use std::borrow::Cow;
use std::collections::BTreeSet;

/// Seconds since 1970-01-01 (UTC), now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 (UTC) at `unix` seconds.
pub fn day_of(unix: i64) -> u64 {
    unix.div_euclid(86_400).max(0) as u64
}

/// What to tag and with which keys: `envelope_tagging` with its secrets loaded.
pub struct Tagging {
    keys: Keys,
    /// Lower case, no trailing dot.
    domains: BTreeSet<String>,
    max_age_days: u16,
    /// Null-sender mail from these networks is not judged (the relay's own DSNs).
    accept_bounces_from: Vec<ipnet::IpNet>,
}

impl Tagging {
    pub fn new<S: AsRef<str>>(
        keys: Keys,
        domains: impl IntoIterator<Item = S>,
        max_age_days: u16,
    ) -> Tagging {
        Tagging {
            keys,
            domains: domains
                .into_iter()
                .map(|d| normal_domain(d.as_ref()))
                .collect(),
            max_age_days,
            accept_bounces_from: Vec::new(),
        }
    }

    /// Null-sender mail from `networks` is let in whatever its recipient: the relay's own
    /// outbound addresses, whose DSNs go to the untagged sender.
    pub fn accepting_bounces_from(mut self, networks: &[ipnet::IpNet]) -> Tagging {
        self.accept_bounces_from = networks.to_vec();
        self
    }

    /// The configuration section, with its secrets file read (errors say why, for the
    /// `envelope_tagging.secret_file` key).
    pub fn load(conf: &crate::config::EnvelopeTagging) -> Result<Tagging, String> {
        let keys = Keys::load(&conf.secret_file)?;
        Ok(Tagging::new(keys, &conf.domains, conf.max_age_days)
            .accepting_bounces_from(&conf.accept_bounces_from))
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }

    pub fn max_age_days(&self) -> u16 {
        self.max_age_days
    }

    /// How many secrets verify (the first of them signs).
    pub fn secrets(&self) -> usize {
        self.keys.all().len()
    }

    /// (local part, domain) of an address of a tagged domain.
    fn tagged_domain<'a>(&self, address: &'a str) -> Option<(&'a str, &'a str)> {
        let (local, domain) = address.rsplit_once('@')?;
        self.domains
            .contains(&normal_domain(domain))
            .then_some((local, domain))
    }

    /// `address` with a tag valid for `max_age` from `now`, when its domain is tagged and it
    /// carries no tag yet; `None` leaves it as it is.
    pub fn tag(&self, address: &str, now: i64) -> Option<String> {
        let (local, domain) = self.tagged_domain(address)?;
        if prvs::parse(local).is_some() {
            return None;
        }
        let expiry = day_of(now) + u64::from(self.max_age_days);
        let tagged = prvs::tag(self.keys.signing(), local, domain, expiry);
        if tagged.is_none() {
            tracing::debug!(
                address,
                "address too long (or quoted) for a BATV tag; sent untagged"
            );
        }
        tagged
    }

    /// Is a message from `sender` to `recipient`, sent from `client` (when known), backscatter?
    /// Only a bounce (`sender` empty, or `<>`) to an address of a tagged domain is judged;
    /// `postmaster` is always let in (RFC 5321 §4.5.1), and so is a bounce from one of
    /// `accept_bounces_from` (the relay itself, whose DSNs go to the untagged sender).
    pub fn check(
        &self,
        sender: &str,
        recipient: &str,
        client: Option<std::net::IpAddr>,
        now: i64,
    ) -> Verdict {
        let sender = sender.trim();
        if !(sender.is_empty() || sender == "<>") {
            return Verdict::NotChecked;
        }
        let recipient = recipient.trim();
        let recipient = recipient
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or(recipient);
        let Some((local, domain)) = self.tagged_domain(recipient) else {
            return Verdict::NotChecked;
        };
        if local.is_empty() || local.eq_ignore_ascii_case("postmaster") {
            return Verdict::NotChecked;
        }
        if client.is_some_and(|ip| self.accept_bounces_from.iter().any(|n| n.contains(&ip))) {
            return Verdict::TrustedSource;
        }
        match prvs::parse(local) {
            None => Verdict::Untagged,
            Some(Err(())) => Verdict::BadTag,
            Some(Ok(t)) => {
                match prvs::check(&t, domain, self.keys.all(), day_of(now), self.max_age_days) {
                    prvs::Check::Valid => Verdict::Valid,
                    prvs::Check::Expired => Verdict::Expired,
                    prvs::Check::Invalid => Verdict::BadTag,
                }
            }
        }
    }
}

fn normal_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The answer on one (sender, recipient) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a bounce, not to a tagged domain, or to postmaster: not ours to judge.
    NotChecked,
    /// A bounce from one of `accept_bounces_from`: the relay's own DSN.
    TrustedSource,
    /// A bounce to an address we tagged, within `max_age`.
    Valid,
    /// A bounce to an address of a tagged domain without a tag: we never sent from it.
    Untagged,
    /// A bounce to an address we tagged, but longer ago than `max_age`.
    Expired,
    /// A bounce to an address whose tag we did not make (malformed, guessed, another
    /// address's, or a secret no longer in the file).
    BadTag,
}

impl Verdict {
    /// Should the message be refused?
    pub fn is_backscatter(self) -> bool {
        matches!(self, Verdict::Untagged | Verdict::Expired | Verdict::BadTag)
    }

    /// One line for a person (the one-shot command's output and the SMTP reply text).
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::NotChecked => "not a bounce to a tagged domain: nothing to check",
            Verdict::TrustedSource => "bounce from an address listed in accept_bounces_from",
            Verdict::Valid => "bounce to a valid BATV-tagged address",
            Verdict::Untagged => {
                "bounce to an untagged address of a domain that tags its mail (BATV): backscatter"
            }
            Verdict::Expired => "bounce to an address whose BATV tag has expired: backscatter",
            Verdict::BadTag => "bounce to an address with an invalid BATV tag: backscatter",
        }
    }
}

/// The envelope of one delivery attempt as it goes on the wire: the sender is tagged when its
/// domain is tagged. A message from `<>` (a DSN of ours) leaves as it is: it goes to the
/// untagged address the sender submitted from, and the domain's bounce check lets it in
/// through `accept_bounces_from`.
pub struct WireEnvelope<'a> {
    pub sender: Cow<'a, str>,
    pub recipients: Vec<&'a str>,
}

impl<'a> WireEnvelope<'a> {
    pub fn new(
        tagging: Option<&Tagging>,
        sender: &'a str,
        recipients: &[&'a str],
        now: i64,
    ) -> WireEnvelope<'a> {
        let sender = match tagging {
            Some(t) if !sender.is_empty() => {
                t.tag(sender, now).map_or(Cow::Borrowed(sender), Cow::Owned)
            }
            _ => Cow::Borrowed(sender),
        };
        WireEnvelope {
            sender,
            recipients: recipients.to_vec(),
        }
    }

    /// The sender carries a tag it did not have in the spool.
    #[cfg(test)]
    fn is_tagged(&self) -> bool {
        matches!(self.sender, Cow::Owned(_))
    }

    pub fn recipients(&self) -> Vec<&str> {
        self.recipients.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000; // 2026-05-28

    fn tagging() -> Tagging {
        let keys = Keys::from_secrets(&["current-secret-0123456789"]).unwrap();
        Tagging::new(keys, ["Example.com."], 7)
    }

    impl Tagging {
        fn check_now(&self, sender: &str, recipient: &str, now: i64) -> Verdict {
            self.check(sender, recipient, None, now)
        }
    }

    #[test]
    fn bounces_from_the_relay_itself_are_let_in() {
        let net: ipnet::IpNet = "203.0.113.0/24".parse().unwrap();
        let t = tagging().accepting_bounces_from(&[net]);
        let relay = Some("203.0.113.7".parse().unwrap());
        let other = Some("198.51.100.1".parse().unwrap());
        assert_eq!(
            t.check("", "app@example.com", relay, NOW),
            Verdict::TrustedSource
        );
        assert_eq!(
            t.check("", "app@example.com", other, NOW),
            Verdict::Untagged
        );
        assert_eq!(t.check("", "app@example.com", None, NOW), Verdict::Untagged);
        assert!(!Verdict::TrustedSource.is_backscatter());
    }

    #[test]
    fn senders_of_tagged_domains_are_tagged_once() {
        let t = tagging();
        let tagged = t.tag("App@EXAMPLE.COM", NOW).unwrap();
        assert!(tagged.starts_with("prvs="), "{tagged}");
        assert!(tagged.ends_with("=App@EXAMPLE.COM"), "{tagged}");
        assert_eq!(t.tag(&tagged, NOW), None, "never tagged twice");
        assert_eq!(t.tag("app@example.org", NOW), None);
        assert_eq!(t.tag("app@sub.example.com", NOW), None);
        assert_eq!(t.tag("", NOW), None);
        assert_eq!(t.tag("root", NOW), None);
    }

    #[test]
    fn verdicts() {
        let t = tagging();
        let tagged = t.tag("app@example.com", NOW).unwrap();
        let day = 86_400;
        assert_eq!(t.check_now("", &tagged, NOW), Verdict::Valid);
        assert_eq!(
            t.check_now("<>", &format!("<{tagged}>"), NOW + 7 * day),
            Verdict::Valid
        );
        assert_eq!(t.check_now("", &tagged, NOW + 8 * day), Verdict::Expired);
        assert_eq!(t.check_now("", &tagged.to_uppercase(), NOW), Verdict::Valid);
        assert_eq!(t.check_now("", "app@example.com", NOW), Verdict::Untagged);
        assert_eq!(t.check_now("", "App@Example.COM.", NOW), Verdict::Untagged);
        let forged = tagged.replace("=app@", "=ceo@");
        assert_eq!(t.check_now("", &forged, NOW), Verdict::BadTag);
        assert_eq!(
            t.check_now("", "prvs=junk=app@example.com", NOW),
            Verdict::BadTag
        );
        // Not ours to judge.
        assert_eq!(
            t.check_now("a@example.net", "app@example.com", NOW),
            Verdict::NotChecked
        );
        assert_eq!(t.check_now("", "app@example.org", NOW), Verdict::NotChecked);
        assert_eq!(
            t.check_now("", "Postmaster@example.com", NOW),
            Verdict::NotChecked
        );
        assert_eq!(t.check_now("", "", NOW), Verdict::NotChecked);
        assert!(Verdict::Untagged.is_backscatter());
        assert!(!Verdict::Valid.is_backscatter());
        assert!(!Verdict::NotChecked.is_backscatter());
    }

    #[test]
    fn a_key_change_keeps_old_tags_valid() {
        let old = tagging();
        let tagged = old.tag("app@example.com", NOW).unwrap();
        let keys = Keys::from_secrets(&["the-next-secret-0123456789", "current-secret-0123456789"])
            .unwrap();
        let rotated = Tagging::new(keys, ["example.com"], 7);
        assert_eq!(rotated.check_now("", &tagged, NOW), Verdict::Valid);
        let fresh = rotated.tag("app@example.com", NOW).unwrap();
        assert_eq!(rotated.check_now("", &fresh, NOW), Verdict::Valid);
        assert_eq!(old.check_now("", &fresh, NOW), Verdict::BadTag);
    }

    #[test]
    fn wire_envelope() {
        let t = tagging();
        let w = WireEnvelope::new(
            Some(&t),
            "app@example.com",
            &["a@example.net", "b@example.com"],
            NOW,
        );
        assert!(w.sender.starts_with("prvs="));
        assert_eq!(w.recipients(), ["a@example.net", "b@example.com"]);
        assert!(w.is_tagged());
        // From <> (our DSNs): nothing is tagged; the recipient is the address as submitted.
        let w = WireEnvelope::new(Some(&t), "", &["a@example.net", "b@example.com"], NOW);
        assert_eq!(w.sender, "");
        assert!(!w.is_tagged());
        assert_eq!(w.recipients(), ["a@example.net", "b@example.com"]);
        // Without tagging nothing changes.
        let w = WireEnvelope::new(None, "app@example.com", &["b@example.com"], NOW);
        assert_eq!(w.sender, "app@example.com");
        assert_eq!(w.recipients(), ["b@example.com"]);
    }
}

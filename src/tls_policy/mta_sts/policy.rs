//! An MTA-STS policy as served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (RFC 8461 3.2), parsed to the grammar, and the MX host check of 4.1.
//!
//! Lines end in LF or CRLF; each is `key: value`. `version`, `mode` and `max_age` are
//! required, at least one `mx` unless the mode is `none`; of a repeated key only the first
//! counts (except `mx`); unknown keys are ignored; anything malformed voids the whole policy.

/// The longest a policy may be cached (one year, 3.2).
pub const MAX_AGE_LIMIT: u32 = 31_557_600;

/// What the policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsMode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Check and report, but deliver anyway.
    Testing,
    /// The domain has withdrawn its policy.
    None,
}

impl StsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StsMode::Enforce => "enforce",
            StsMode::Testing => "testing",
            StsMode::None => "none",
        }
    }
}

/// One `mx` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPattern {
    /// `mail.example.com`: that host.
    Exact(String),
    /// `*.example.com`: one label in front of `example.com` (not `example.com` itself, not
    /// `a.b.example.com`).
    Wildcard(String),
}

impl MxPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            MxPattern::Exact(h) => h == host,
            MxPattern::Wildcard(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        }
    }
}

impl std::fmt::Display for MxPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MxPattern::Exact(h) => f.write_str(h),
            MxPattern::Wildcard(p) => write!(f, "*.{p}"),
        }
    }
}

/// A valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsPolicy {
    pub mode: StsMode,
    pub mx: Vec<MxPattern>,
    /// Seconds it may be cached, at most [`MAX_AGE_LIMIT`].
    pub max_age: u32,
    /// The text as served, for TLS reports (`policy-string`).
    pub text: String,
}

impl StsPolicy {
    /// Parse a policy body.
    pub fn parse(text: &str) -> Result<StsPolicy, String> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for (n, line) in lines(text).enumerate() {
            let n = n + 1;
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| format!("line {n} is not 'key: value'"))?;
            let value = value.trim_matches([' ', '\t']);
            match key {
                "version" => {
                    if value != "STSv1" {
                        return Err(format!("line {n}: version '{value}' is not STSv1"));
                    }
                    version.get_or_insert(());
                }
                "mode" => {
                    let m = match value {
                        "enforce" => StsMode::Enforce,
                        "testing" => StsMode::Testing,
                        "none" => StsMode::None,
                        other => {
                            return Err(format!(
                                "line {n}: mode '{other}' is not enforce, testing or none"
                            ))
                        }
                    };
                    mode.get_or_insert(m);
                }
                "max_age" => {
                    if value.is_empty()
                        || value.len() > 10
                        || !value.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(format!("line {n}: max_age '{value}' is not 1 to 10 digits"));
                    }
                    // Ten digits fit in u64; over a year is held to a year (3.2's maximum).
                    let secs: u64 = value.parse().unwrap_or(u64::MAX);
                    max_age.get_or_insert(secs.min(u64::from(MAX_AGE_LIMIT)) as u32);
                }
                "mx" => mx.push(mx_pattern(value).ok_or_else(|| {
                    format!("line {n}: mx '{value}' is not a host name or *.domain")
                })?),
                other => check_extension(other, value).map_err(|e| format!("line {n}: {e}"))?,
            }
        }
        if version.is_none() {
            return Err("no version line".into());
        }
        let mode = mode.ok_or("no mode line")?;
        let max_age = max_age.ok_or("no max_age line")?;
        if mx.is_empty() && mode != StsMode::None {
            return Err(format!("mode {} but no mx line", mode.as_str()));
        }
        Ok(StsPolicy {
            mode,
            mx,
            max_age,
            text: text.to_string(),
        })
    }

    /// Is `host` (an MX host name) one the policy allows? Case and a trailing dot do not
    /// matter.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| p.matches(&host))
    }

    /// The policy's lines as a TLS report quotes them (`policy-string`, RFC 8460 4.3).
    pub fn lines(&self) -> Vec<String> {
        lines(&self.text).map(str::to_string).collect()
    }

    /// The `mx` patterns as a TLS report lists them (`mx-host`).
    pub fn mx_hosts(&self) -> Vec<String> {
        self.mx.iter().map(ToString::to_string).collect()
    }
}

/// The lines of a policy: split at LF, CR before it dropped; empty lines at the very end (a
/// trailing newline or two) are not lines.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.trim_end_matches(['\r', '\n']);
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(move |_| !body.is_empty())
}

/// `["*."] Domain` (RFC 5321 Domain: LDH labels), lower-cased.
fn mx_pattern(value: &str) -> Option<MxPattern> {
    let (wildcard, domain) = match value.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    // The configuration's host name check, without the `_` it tolerates in DNS labels.
    let ldh = crate::config::is_hostname(domain) && !domain.contains('_');
    if !ldh {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    Some(if wildcard {
        MxPattern::Wildcard(domain)
    } else {
        MxPattern::Exact(domain)
    })
}

/// An unknown field: `sts-policy-ext-name` and a value of visible characters (UTF-8 allowed)
/// with inner spaces.
fn check_extension(name: &str, value: &str) -> Result<(), String> {
    let name_ok = super::super::dns::is_extension_name(name);
    let value_ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c == ' ' || c == '\t' || !c.is_control());
    if !name_ok {
        return Err(format!("'{name}' is not a field name"));
    }
    if !value_ok {
        return Err(format!("field '{name}' has no valid value"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.mx.example.net\nmax_age: 604800\n";

    #[test]
    fn a_policy_as_published() {
        let p = StsPolicy::parse(GOOD).unwrap();
        assert_eq!(p.mode, StsMode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert_eq!(p.mx_hosts(), ["mail.example.com", "*.mx.example.net"]);
        assert_eq!(p.lines().len(), 5);
        let crlf = GOOD.replace('\n', "\r\n");
        assert_eq!(StsPolicy::parse(&crlf).unwrap().lines(), p.lines());
        // Unknown fields are ignored; repeated ones: the first counts.
        let p = StsPolicy::parse(
            "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age:86400\nfuture_key: some value\n\n",
        )
        .unwrap();
        assert_eq!(p.mode, StsMode::Testing);
        // mode none needs no mx.
        let p = StsPolicy::parse("version: STSv1\nmode: none\nmax_age: 86400").unwrap();
        assert_eq!(p.mode, StsMode::None);
        // Over a year is held to a year.
        let p = StsPolicy::parse("version: STSv1\nmode: none\nmax_age: 9999999999").unwrap();
        assert_eq!(p.max_age, MAX_AGE_LIMIT);
    }

    #[test]
    fn malformed_policies_are_void() {
        for bad in [
            "",
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
            "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: mail.example.\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n",
            "version: STSv1\nmode: enforce\n\nmx: a.example\nmax_age: 1\n",
            "<html><body>Not found</body></html>",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n_ext: x\n",
        ] {
            assert!(StsPolicy::parse(bad).is_err(), "accepted: {bad:?}");
        }
    }

    #[test]
    fn mx_matching() {
        let p = StsPolicy::parse(GOOD).unwrap();
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.Example.com."));
        assert!(p.allows("a.mx.example.net"));
        assert!(!p.allows("mx.example.net"), "the wildcard needs a label");
        assert!(!p.allows("a.b.mx.example.net"), "one label only");
        assert!(!p.allows("other.example.com"));
        assert!(!p.allows("amail.example.com"));
        assert!(!p.allows("evilmx.example.net"));
    }
}

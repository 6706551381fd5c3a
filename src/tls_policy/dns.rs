//! What the policies make of DNS names and records: the `name=value` fields RFC 8461 3.1 and
//! RFC 8460 3 write their TXT records in (looked up with `crate::resolver::txt_records`), and
//! the ASCII form of a domain name.

use mail_auth::hickory_resolver::proto::rr::Name;

/// The one record among the TXT records at `name` that begins with `version`: the others are
/// ignored (RFC 8461 3.1, RFC 8460 3), and none or several means none.
pub fn only_record<'a>(
    records: &'a [String],
    name: &str,
    version: &str,
) -> Result<&'a str, String> {
    let candidates: Vec<&String> = records.iter().filter(|r| r.starts_with(version)).collect();
    match candidates.as_slice() {
        [] => Err(format!("no {name} TXT record starting with {version}")),
        [one] => Ok(one),
        more => Err(format!(
            "{} {name} TXT records (exactly one is allowed)",
            more.len()
        )),
    }
}

/// The fields of a policy TXT record (`_mta-sts`, `_smtp._tls`): `name=value` separated by
/// `*WSP ";" *WSP`, an optional delimiter at the end. Each field is split as it is reached, so
/// a caller can refuse a record for its first field (the version) before looking further.
pub fn fields(text: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    let mut parts: Vec<&str> = text.split(';').collect();
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.trim_matches([' ', '\t']).is_empty())
    {
        parts.pop();
    }
    parts.into_iter().map(|p| {
        let p = p.trim_matches([' ', '\t']);
        p.split_once('=')
            .ok_or_else(|| format!("'{p}' is not name=value"))
    })
}

/// A field the record's RFC does not define: `ext-name "=" ext-value` (RFC 8461 3.1
/// `sts-ext-name`, RFC 8460 3 `tlsrpt-ext-name`), the value visible ASCII without `=` or `;`.
pub fn check_extension(name: &str, value: &str) -> Result<(), String> {
    let value_ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'=' && b != b';');
    if is_extension_name(name) && value_ok {
        Ok(())
    } else {
        Err(format!("field '{name}={value}' is malformed"))
    }
}

/// The name of a field the RFC does not define, in a TXT record or a policy file (RFC 8461
/// `sts-ext-name`, `sts-policy-ext-name`; RFC 8460 `tlsrpt-ext-name`): a letter or digit, then
/// up to 31 letters, digits, `_`, `-` and `.`.
pub fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A domain as DNS and policies spell it: A-labels, lower case, no trailing dot. `None` for
/// something that is not a host name (it cannot have a policy, and must not become a file
/// name).
pub fn ascii_domain(domain: &str) -> Option<String> {
    let d = domain.trim_end_matches('.');
    let ascii = if d.is_ascii() {
        d.to_ascii_lowercase()
    } else {
        Name::from_utf8(d)
            .ok()?
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    crate::config::is_hostname(&ascii).then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_split_as_reached() {
        let f: Vec<_> = fields("v=STSv1 ;\tid=abc ;").collect();
        assert_eq!(f, [Ok(("v", "STSv1")), Ok(("id", "abc"))]);
        let f: Vec<_> = fields("v=STSv1; junk;;").collect();
        assert_eq!(f[0], Ok(("v", "STSv1")));
        assert_eq!(f[1], Err("'junk' is not name=value".to_string()));
        assert_eq!(
            f.len(),
            3,
            "only the last empty field is a trailing delimiter"
        );
        assert!(check_extension("ext-1.x", "a,b").is_ok());
        assert!(check_extension("-x", "1").is_err());
        assert!(check_extension("x", "a=b").is_err());
    }

    #[test]
    fn ascii_domains() {
        assert_eq!(ascii_domain("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(
            ascii_domain("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(ascii_domain("../etc"), None);
        assert_eq!(ascii_domain("a/b.example"), None);
        assert_eq!(ascii_domain(""), None);
    }
}

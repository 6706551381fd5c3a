//! The `_mta-sts.<domain>` TXT record (RFC 8461 3.1): `v=STSv1; id=...`, parsed to the
//! grammar. Of the TXT records at the name, those that do not begin with `v=STSv1` are
//! ignored; anything but exactly one remaining, valid record means the domain has no
//! available policy (a cached one may still apply, 5.1).

use super::super::dns::{txt_records, TxtAnswer};
use mail_auth::MessageAuthenticator;

/// A valid MTA-STS TXT record: the id of the policy the domain currently publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    pub id: String,
}

/// What DNS says about a domain's MTA-STS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// One valid record.
    Record(StsRecord),
    /// No usable record; the reason, for logs (none, several, invalid).
    Absent(String),
    /// The lookup failed (timeout, SERVFAIL): nothing is known.
    Failed(String),
}

/// Look up `_mta-sts.<domain>`.
pub async fn discover(resolver: &MessageAuthenticator, domain: &str) -> Discovery {
    match txt_records(resolver, &format!("_mta-sts.{domain}")).await {
        TxtAnswer::None => Discovery::Absent("no _mta-sts TXT record".into()),
        TxtAnswer::Error(e) => Discovery::Failed(e),
        TxtAnswer::Records(records) => select(&records),
    }
}

/// The record among `records` (each the concatenation of its strings, 3.1).
pub fn select(records: &[String]) -> Discovery {
    let candidates: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1"))
        .collect();
    match candidates.as_slice() {
        [] => Discovery::Absent("no _mta-sts TXT record starting with v=STSv1".into()),
        [one] => match parse(one) {
            Ok(r) => Discovery::Record(r),
            Err(e) => Discovery::Absent(format!("invalid _mta-sts record: {e}")),
        },
        more => Discovery::Absent(format!(
            "{} _mta-sts TXT records (exactly one is allowed)",
            more.len()
        )),
    }
}

/// Parse one record: `sts-version 1*(sts-field-delim sts-field) [sts-field-delim]`.
pub fn parse(text: &str) -> Result<StsRecord, String> {
    let mut fields = split_fields(text)?.into_iter();
    if fields.next() != Some(("v", "STSv1")) {
        return Err("it does not start with v=STSv1".into());
    }
    let mut id = None;
    for (name, value) in fields {
        if name == "id" {
            if !(1..=32).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(format!("id '{value}' is not 1 to 32 letters and digits"));
            }
            // A repeated field: the first one counts (as 3.2 says of policies).
            id.get_or_insert_with(|| value.to_string());
        } else {
            check_extension(name, value)?;
        }
    }
    id.map(|id| StsRecord { id })
        .ok_or_else(|| "it has no id".to_string())
}

/// `name=value` fields separated by `*WSP ";" *WSP`, an optional delimiter at the end.
fn split_fields(text: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut parts: Vec<&str> = text.split(';').collect();
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.trim_matches([' ', '\t']).is_empty())
    {
        parts.pop();
    }
    parts
        .into_iter()
        .map(|p| {
            let p = p.trim_matches([' ', '\t']);
            let (name, value) = p
                .split_once('=')
                .ok_or_else(|| format!("'{p}' is not name=value"))?;
            Ok((name, value))
        })
        .collect()
}

/// `sts-ext-name "=" sts-ext-value`.
fn check_extension(name: &str, value: &str) -> Result<(), String> {
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let value_ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'=' && b != b';');
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(format!("field '{name}={value}' is malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Discovery {
        Discovery::Record(StsRecord { id: id.into() })
    }

    #[test]
    fn valid_records() {
        assert_eq!(
            select(&["v=STSv1; id=20160831085700Z;".into()]),
            rec("20160831085700Z")
        );
        assert_eq!(select(&["v=STSv1;id=abc".into()]), rec("abc"));
        assert_eq!(select(&["v=STSv1 ;\tid=abc ; ext=1".into()]), rec("abc"));
        // Other TXT records at the name do not matter.
        assert_eq!(
            select(&["google-site-verification=x".into(), "v=STSv1; id=1".into()]),
            rec("1")
        );
        assert_eq!(select(&["v=STSv1; id=a; id=b".into()]), rec("a"));
    }

    #[test]
    fn anything_else_means_no_policy() {
        for records in [
            vec![],
            vec!["v=spf1 -all".to_string()],
            vec!["v=STSv1; id=1".into(), "v=STSv1; id=2".into()],
            vec!["v=STSv1".into()],
            vec!["v=STSv1; id=".into()],
            vec!["v=STSv1; id=has-dash".into()],
            vec!["v=STSv1; id=123456789012345678901234567890123".into()],
            vec!["v=STSv1; id=1; bad".into()],
            vec!["v=STSv1; id=1; e=a=b".into()],
            vec!["v=STSv10; id=1".into()],
            vec!["v=STSv1; id=1;;".into()],
        ] {
            assert!(
                matches!(select(&records), Discovery::Absent(_)),
                "{records:?} -> {:?}",
                select(&records)
            );
        }
    }
}

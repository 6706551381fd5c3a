//! Where a domain wants its TLS reports: the `_smtp._tls.<domain>` TXT record (RFC 8460 3),
//! `v=TLSRPTv1; rua=mailto:...,https://...`, parsed to the grammar. Of the TXT records at the
//! name those not beginning with `v=TLSRPTv1` are ignored; anything but exactly one valid
//! record means the domain takes no reports.

use super::super::dns::{txt_records, TxtAnswer};
use mail_auth::MessageAuthenticator;

/// One place to send a report to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `mailto:`: the address (percent-decoded, without `?` fields).
    Mail(String),
    /// `https:`: the URL, to POST to.
    Https(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Mail(a) => write!(f, "mailto:{a}"),
            Destination::Https(u) => f.write_str(u),
        }
    }
}

/// What DNS says about a domain's reporting record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    /// Where to send (never empty).
    Destinations(Vec<Destination>),
    /// No usable record (none, several, invalid, no usable URI): why.
    Absent(String),
    /// The lookup failed: try again later.
    Failed(String),
}

/// Look up `_smtp._tls.<domain>`.
pub async fn discover(resolver: &MessageAuthenticator, domain: &str) -> Rua {
    match txt_records(resolver, &format!("_smtp._tls.{domain}")).await {
        TxtAnswer::None => Rua::Absent("no _smtp._tls TXT record".into()),
        TxtAnswer::Error(e) => Rua::Failed(e),
        TxtAnswer::Records(records) => select(&records),
    }
}

/// The destinations of the one valid record among `records`.
pub fn select(records: &[String]) -> Rua {
    let candidates: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=TLSRPTv1"))
        .collect();
    match candidates.as_slice() {
        [] => Rua::Absent("no _smtp._tls TXT record starting with v=TLSRPTv1".into()),
        [one] => match parse(one) {
            Ok(list) if list.is_empty() => {
                Rua::Absent("the rua of _smtp._tls has no mailto: or https: URI".into())
            }
            Ok(list) => Rua::Destinations(list),
            Err(e) => Rua::Absent(format!("invalid _smtp._tls record: {e}")),
        },
        more => Rua::Absent(format!(
            "{} _smtp._tls TXT records (exactly one is allowed)",
            more.len()
        )),
    }
}

/// Parse one record; the usable destinations of its (first) `rua`.
pub fn parse(text: &str) -> Result<Vec<Destination>, String> {
    let mut parts: Vec<&str> = text.split(';').collect();
    if parts.len() > 1
        && parts
            .last()
            .is_some_and(|p| p.trim_matches([' ', '\t']).is_empty())
    {
        parts.pop();
    }
    let mut fields = parts.into_iter().map(|p| p.trim_matches([' ', '\t']));
    if fields.next() != Some("v=TLSRPTv1") {
        return Err("it does not start with v=TLSRPTv1".into());
    }
    let mut rua = None;
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("'{field}' is not name=value"))?;
        if name == "rua" {
            let list = value
                .split(',')
                .map(|u| uri(u.trim_matches([' ', '\t'])))
                .collect::<Result<Vec<_>, _>>()?;
            rua.get_or_insert(list);
        } else {
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
            if !name_ok || !value_ok {
                return Err(format!("field '{field}' is malformed"));
            }
        }
    }
    let list = rua.ok_or("it has no rua")?;
    Ok(list.into_iter().flatten().collect())
}

/// One URI of `rua`: a destination, or `None` for a scheme we do not send to.
fn uri(u: &str) -> Result<Option<Destination>, String> {
    let (scheme, rest) = u
        .split_once(':')
        .ok_or_else(|| format!("'{u}' is not a URI"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        || rest.is_empty()
        || !u.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(format!("'{u}' is not a URI"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "mailto" => {
            let address = percent_decode(rest.split('?').next().unwrap_or_default())
                .ok_or_else(|| format!("'{u}': bad percent-encoding"))?;
            match address.rsplit_once('@') {
                Some((local, domain))
                    if !local.is_empty() && crate::config::is_hostname(domain) =>
                {
                    Ok(Some(Destination::Mail(address)))
                }
                _ => Err(format!("'{u}' is not a mail address")),
            }
        }
        "https" => match u.parse::<hyper::Uri>() {
            Ok(parsed) if parsed.host().is_some() => Ok(Some(Destination::Https(u.to_string()))),
            _ => Err(format!("'{u}' is not an https URL")),
        },
        _ => Ok(None),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(r: Rua) -> Vec<Destination> {
        match r {
            Rua::Destinations(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_as_published() {
        assert_eq!(
            dests(select(
                &["v=TLSRPTv1; rua=mailto:tlsrpt@example.com".into()]
            )),
            [Destination::Mail("tlsrpt@example.com".into())]
        );
        assert_eq!(
            dests(select(&[
                "v=spf1 -all".into(),
                "v=TLSRPTv1;rua=mailto:a%2Cb@example.com , https://reports.example.com/v1?x=1;"
                    .into()
            ])),
            [
                Destination::Mail("a,b@example.com".into()),
                Destination::Https("https://reports.example.com/v1?x=1".into())
            ]
        );
        // Other schemes are skipped; extensions ignored.
        assert_eq!(
            dests(select(&[
                "v=TLSRPTv1; rua=ftp://x.example/r,mailto:r@example.com?subject=x; ext=1".into()
            ])),
            [Destination::Mail("r@example.com".into())]
        );
    }

    #[test]
    fn anything_else_means_no_reports() {
        for records in [
            vec![],
            vec![
                "v=TLSRPTv1; rua=mailto:a@example.com".into(),
                "v=TLSRPTv1; rua=mailto:b@example.com".to_string(),
            ],
            vec!["v=TLSRPTv1".into()],
            vec!["v=TLSRPTv1; rua=".into()],
            vec!["v=TLSRPTv1; rua=mailto:nobody".into()],
            vec!["v=TLSRPTv1; rua=ftp://only.example/".into()],
            vec!["v=TLSRPTv1; rua=mailto:a@example.com; junk".into()],
            vec!["v=TLSRPTv2; rua=mailto:a@example.com".into()],
        ] {
            assert!(
                matches!(select(&records), Rua::Absent(_)),
                "{records:?} -> {:?}",
                select(&records)
            );
        }
    }
}

//! Where a domain wants its TLS reports: the `_smtp._tls.<domain>` TXT record (RFC 8460 3),
//! `v=TLSRPTv1; rua=mailto:...,https://...`, parsed to the grammar. Of the TXT records at the
//! name those not beginning with `v=TLSRPTv1` are ignored; anything but exactly one valid
//! record means the domain takes no reports.

use super::super::dns::{check_extension, fields, only_record};
use crate::resolver::{txt_records, TxtAnswer};
use crate::smtp::url::percent_decode;
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
    let list = only_record(records, "_smtp._tls", "v=TLSRPTv1")
        .and_then(|r| parse(r).map_err(|e| format!("invalid _smtp._tls record: {e}")));
    match list {
        Ok(list) if list.is_empty() => {
            Rua::Absent("the rua of _smtp._tls has no mailto: or https: URI".into())
        }
        Ok(list) => Rua::Destinations(list),
        Err(e) => Rua::Absent(e),
    }
}

/// Parse one record; the usable destinations of its (first) `rua`.
pub fn parse(text: &str) -> Result<Vec<Destination>, String> {
    let mut fields = fields(text);
    if fields.next() != Some(Ok(("v", "TLSRPTv1"))) {
        return Err("it does not start with v=TLSRPTv1".into());
    }
    let mut rua = None;
    for field in fields {
        let (name, value) = field?;
        if name == "rua" {
            let list = value
                .split(',')
                .map(|u| uri(u.trim_matches([' ', '\t'])))
                .collect::<Result<Vec<_>, _>>()?;
            rua.get_or_insert(list);
        } else {
            check_extension(name, value)?;
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
                .map_err(|_| format!("'{u}': bad percent-encoding"))?;
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

//! The DKIM part of the DNS doctor: the selector's TXT record exists, is exactly one DKIM
//! record, parses (v=DKIM1, k= matching the key, p= non-empty), is not in testing mode, and
//! publishes the public half of the configured private key.

use super::{result, tags, txt_strings, Check, CheckResult, Status, TxtAnswer};
use crate::dkim::keys::{rsa_pkcs1_from_spki, txt_value, KeyAlgorithm, PrivateKey};
use crate::tools::keygen::{zone_record, TXT_STRING_MAX};
use mail_auth::dkim::DomainKey;
use mail_auth::dns::TxtRecordParser;
use mail_auth::MessageAuthenticator;

fn is_dkim_record(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("v=DKIM1") || tags(t).iter().any(|(k, _)| k == "p" || k == "k")
}

pub(crate) async fn check_dkim(
    resolver: &MessageAuthenticator,
    domain: &str,
    selector: &str,
    key_path: &std::path::Path,
) -> CheckResult {
    let check = Check::Dkim(selector.to_string());
    let name = format!("{selector}._domainkey.{domain}");
    let key = match PrivateKey::load(key_path) {
        Ok(k) => k,
        Err(e) => {
            return result(domain, check, Status::Fail, format!("cannot check: {e}"));
        }
    };
    let expected = zone_record(&name, &txt_value(key.algorithm, &key.public_key_base64()))
        .replace("\n\t", " ");
    let records = match txt_strings(resolver, &name).await {
        TxtAnswer::Records(r) => r,
        TxtAnswer::None => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("no TXT record at {name}: publish {expected}"),
            )
        }
        TxtAnswer::Error(e) => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("cannot look up {name}: {e}"),
            )
        }
    };
    let dkim: Vec<&Vec<Vec<u8>>> = records
        .iter()
        .filter(|r| is_dkim_record(&String::from_utf8_lossy(&r.concat())))
        .collect();
    match dkim.len() {
        0 => {
            return result(
                domain,
                check,
                Status::Fail,
                format!(
                    "the TXT record at {name} is not a DKIM record (no v=DKIM1, k= or p=): publish {expected}"
                ),
            )
        }
        1 => {}
        n => {
            return result(
                domain,
                check,
                Status::Fail,
                format!(
                    "{n} DKIM records at {name}: receivers pick one at random or fail; keep exactly one, {expected}"
                ),
            )
        }
    }
    let strings = dkim[0];
    let joined = strings.concat();
    let text = String::from_utf8_lossy(&joined).to_string();
    // A value cut at the string limit ends in a string of exactly 255 bytes (a correct split's
    // last string is almost always shorter; full-size strings before it are normal).
    let hint_split = strings.last().is_some_and(|s| s.len() == TXT_STRING_MAX);

    if text.contains('"') {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "the record at {name} contains quote characters: the zone-file form was pasted into a field that takes the bare value; publish the value without quotes (the 'DNS panel' line of keygen)"
            ),
        );
    }
    let t = tags(&text);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(v) = get("v") {
        if v != "DKIM1" || !text.trim_start().starts_with("v=") {
            return result(
                domain,
                check,
                Status::Fail,
                format!("v={v} at {name}: it must be v=DKIM1 and come first"),
            );
        }
    }
    let k = get("k").unwrap_or("rsa").to_ascii_lowercase();
    if k != key.algorithm.key_type() {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "k={k} at {name} but {} is an {} key: publish {expected}",
                key_path.display(),
                key.algorithm.key_type()
            ),
        );
    }
    let p: String = get("p")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if p.is_empty() {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "{name} has an empty p= (key revoked): signatures of this selector fail; publish {expected}"
            ),
        );
    }
    let truncated = if hint_split {
        format!(
            " (its last string is exactly {TXT_STRING_MAX} bytes: the value was probably cut at the \
             TXT string limit; publish it as several quoted strings of at most {TXT_STRING_MAX} bytes)"
        )
    } else {
        String::new()
    };
    use base64::Engine;
    let published = match base64::engine::general_purpose::STANDARD.decode(p.as_bytes()) {
        Ok(b) => b,
        Err(_) => {
            return result(
                domain,
                check,
                Status::Fail,
                format!("p= at {name} is not valid base64{truncated}"),
            )
        }
    };
    // What receivers will do with it: mail-auth's parser stands in for them.
    if let Err(e) = DomainKey::parse(&joined) {
        return result(
            domain,
            check,
            Status::Fail,
            format!("receivers cannot use the record at {name}: {e}{truncated}"),
        );
    }
    if !same_key(key.algorithm, &published, &key.public_key) {
        return result(
            domain,
            check,
            Status::Fail,
            format!(
                "{name} publishes a different key than {}{truncated}: publish {expected}",
                key_path.display()
            ),
        );
    }
    if let Some(tflags) = get("t") {
        if tflags
            .split(':')
            .any(|f| f.trim().eq_ignore_ascii_case("y"))
        {
            return result(
                domain,
                check,
                Status::Warn,
                format!(
                    "{name} matches the key but has t=y (testing): receivers may treat failing signatures as unsigned; remove t=y for production"
                ),
            );
        }
    }
    let bits = match key.algorithm {
        KeyAlgorithm::RsaSha256 => format!(", {} bits", key.bits),
        KeyAlgorithm::Ed25519Sha256 => String::new(),
    };
    result(
        domain,
        check,
        Status::Ok,
        format!(
            "{name} publishes the public key of {} ({}{bits})",
            key_path.display(),
            key.algorithm.key_type()
        ),
    )
}

/// Same public key? RSA records may publish SubjectPublicKeyInfo (usual) or a bare PKCS#1
/// RSAPublicKey; both are accepted by verifiers, so both count.
fn same_key(alg: KeyAlgorithm, published: &[u8], ours: &[u8]) -> bool {
    match alg {
        KeyAlgorithm::Ed25519Sha256 => published == ours,
        KeyAlgorithm::RsaSha256 => {
            let a = rsa_pkcs1_from_spki(published).unwrap_or(published);
            let b = rsa_pkcs1_from_spki(ours).unwrap_or(ours);
            a == b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_parsing() {
        let t = tags("v=DKIM1; k = rsa ;p=AB CD");
        assert_eq!(t[1], ("k".into(), "rsa".into()));
        assert_eq!(t[2], ("p".into(), "AB CD".into()));
        assert!(is_dkim_record("v=DKIM1; p=x"));
        assert!(is_dkim_record("k=rsa; p=x"));
        assert!(!is_dkim_record("google-site-verification=abc"));
    }
}

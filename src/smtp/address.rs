//! Mail addresses as they appear in the envelope and in header fields.

/// The domain of `local@domain`, lower-cased; `None` for an address without one.
pub fn domain_of(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

/// An address with its domain lower-cased (local parts are case-sensitive in principle).
pub fn normalize(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!(
            "{local}@{}",
            domain.trim_end_matches('.').to_ascii_lowercase()
        ),
        None => address.to_string(),
    }
}

/// Is this an address we are willing to put in an envelope: `local@domain`, no spaces, no
/// control characters or angle brackets, a domain of labels (or an address literal).
pub fn is_valid_mailbox(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if address
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
    {
        return false;
    }
    if domain.starts_with('[') {
        return domain.ends_with(']');
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// Does `domain` equal `parent` or lie below it?
pub fn is_same_or_subdomain(domain: &str, parent: &str) -> bool {
    domain == parent
        || (domain.len() > parent.len()
            && domain.ends_with(parent)
            && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain_of("a@Example.COM"), Some("example.com".into()));
        assert_eq!(domain_of("root"), None);
        assert_eq!(domain_of("@x"), None);
        assert!(is_same_or_subdomain("mail.example.com", "example.com"));
        assert!(is_same_or_subdomain("example.com", "example.com"));
        assert!(!is_same_or_subdomain("badexample.com", "example.com"));
    }

    #[test]
    fn mailboxes() {
        assert!(is_valid_mailbox("a.b+c@example.com"));
        assert!(is_valid_mailbox("user@[127.0.0.1]"));
        assert!(!is_valid_mailbox("a b@example.com"));
        assert!(!is_valid_mailbox("a@exa..mple.com"));
        assert!(!is_valid_mailbox("a@"));
        assert!(!is_valid_mailbox("a@b\r\nRCPT"));
    }
}

//! `keygen`: make a new DKIM private key (PKCS#8 PEM, mode 0600, never over an existing file) and
//! the DNS record that publishes its public half, both as zone-file syntax (split into ≤255-byte
//! strings, the most a TXT string can hold) and as the bare value that DNS panels ask for.

use crate::dkim::keys::{KeyAlgorithm, PrivateKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The largest character string a TXT record can carry (RFC 1035 §3.3: one length byte).
pub const TXT_STRING_MAX: usize = 255;

/// What kind of key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeygenAlgorithm {
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeygenAlgorithm {
    /// The command-line names, in the order `--help` lists them.
    pub const NAMES: &'static [&'static str] = &["rsa2048", "rsa3072", "rsa4096", "ed25519"];

    /// The signature algorithm keys of this kind sign with.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            KeygenAlgorithm::Ed25519 => KeyAlgorithm::Ed25519Sha256,
            _ => KeyAlgorithm::RsaSha256,
        }
    }

    pub fn parse(name: &str) -> Option<KeygenAlgorithm> {
        match name.to_ascii_lowercase().as_str() {
            "ed25519" => Some(KeygenAlgorithm::Ed25519),
            "rsa2048" | "rsa" => Some(KeygenAlgorithm::Rsa2048),
            "rsa3072" => Some(KeygenAlgorithm::Rsa3072),
            "rsa4096" => Some(KeygenAlgorithm::Rsa4096),
            _ => None,
        }
    }
}

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("'{0}' is not a domain name")]
    BadDomain(String),
    #[error("'{0}' is not a valid selector (letters, digits, '-' and '_', dot-separated)")]
    BadSelector(String),
    #[error("{0} already exists; keygen never overwrites a key (pick another selector or --out)")]
    Exists(PathBuf),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key generation failed in the crypto library")]
    Generate,
    #[error("the new key does not load back: {0}")]
    Reload(String),
}

/// A key written to disk and the record to publish for it.
pub struct Generated {
    pub path: PathBuf,
    pub domain: String,
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    /// The TXT value, unsplit: `v=DKIM1; k=rsa; p=…`.
    pub value: String,
}

impl Generated {
    /// The owner name of the record, without the final dot.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The record in zone-file syntax, strings ≤255 bytes (see [`zone_record`]).
    pub fn zone_record(&self) -> String {
        zone_record(&self.record_name(), &self.value)
    }
}

/// Generate a key as PKCS#8 v1 DER (the form `openssl genpkey` writes and every DKIM signer
/// reads).
pub fn generate_pkcs8(algorithm: KeygenAlgorithm) -> Result<Vec<u8>, KeygenError> {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let rsa = |size| -> Result<Vec<u8>, KeygenError> {
        let pair = KeyPair::generate(size).map_err(|_| KeygenError::Generate)?;
        let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeygenError::Generate)?;
        Ok(der.as_ref().to_vec())
    };
    match algorithm {
        KeygenAlgorithm::Rsa2048 => rsa(KeySize::Rsa2048),
        KeygenAlgorithm::Rsa3072 => rsa(KeySize::Rsa3072),
        KeygenAlgorithm::Rsa4096 => rsa(KeySize::Rsa4096),
        KeygenAlgorithm::Ed25519 => {
            let pair = aws_lc_rs::signature::Ed25519KeyPair::generate()
                .map_err(|_| KeygenError::Generate)?;
            let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeygenError::Generate)?;
            Ok(der.as_ref().to_vec())
        }
    }
}

/// PEM-encode PKCS#8 DER (`-----BEGIN PRIVATE KEY-----`, 64-column base64).
pub fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + 80);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The DKIM TXT value for a public key: `v=DKIM1; k=<type>; p=<base64>`.
pub fn txt_value(algorithm: KeyAlgorithm, public_key_base64: &str) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        algorithm.key_type(),
        public_key_base64
    )
}

/// Split a TXT value into character strings of at most 255 bytes: the tags before `p=` first
/// (so the record reads like `opendkim-genkey`'s), then the key in full-size chunks. Splitting
/// anywhere is allowed: receivers join the strings with nothing between them (RFC 6376
/// §3.6.2.2).
pub fn split_txt(value: &str) -> Vec<&str> {
    let (head, mut rest) = match value.find("p=") {
        Some(i) if i > 0 => value.split_at(i),
        _ => ("", value),
    };
    let mut out = Vec::new();
    if !head.is_empty() {
        out.extend(chunks(head));
    }
    while !rest.is_empty() {
        let cut = floor_char_boundary(rest, TXT_STRING_MAX);
        let (a, b) = rest.split_at(cut);
        out.push(a);
        rest = b;
    }
    out
}

fn chunks(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let cut = floor_char_boundary(rest, TXT_STRING_MAX);
        let (a, b) = rest.split_at(cut);
        out.push(a);
        rest = b;
    }
    out
}

/// The largest index ≤ `max` that is a char boundary (always > 0 for a non-empty string whose
/// characters are shorter than `max`).
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i.max(1)
}

/// The record in zone-file syntax: `NAME. IN TXT ( "…" "…" )`, one string per line as
/// `opendkim-genkey` prints it, so it can be pasted into a BIND zone as-is.
pub fn zone_record(name: &str, value: &str) -> String {
    let strings = split_txt(value);
    let mut out = format!("{}. IN TXT (", name.trim_end_matches('.'));
    for (i, s) in strings.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\t");
        } else {
            out.push(' ');
        }
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
    out.push_str(" )");
    out
}

/// The strings of a record printed by [`zone_record`] (what a zone-file parser would serve).
pub fn parse_zone_strings(record: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = record;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// Is `s` a plausible domain name or selector (the configuration's rule)?
fn valid_name(s: &str) -> bool {
    crate::config::is_hostname(s)
}

/// Generate a key for `domain`/`selector`, write it to `DIR/D.S.pem` (mode 0600, created
/// exclusively: an existing file is never replaced) and return the record to publish.
pub fn keygen(
    domain: &str,
    selector: &str,
    algorithm: KeygenAlgorithm,
    out_dir: &Path,
) -> Result<Generated, KeygenError> {
    let domain_norm = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if !valid_name(&domain_norm) || !domain_norm.contains('.') {
        return Err(KeygenError::BadDomain(domain.to_string()));
    }
    let selector = selector.trim();
    if !valid_name(selector) {
        return Err(KeygenError::BadSelector(selector.to_string()));
    }
    let path = out_dir.join(format!("{domain_norm}.{selector}.pem"));
    // Checked before the (slow, for RSA 4096) generation; `create_new` below is what makes
    // it race-free.
    if path.exists() {
        return Err(KeygenError::Exists(path));
    }

    let pem = pkcs8_pem(&generate_pkcs8(algorithm)?);
    // Load it back with the same code the relay uses, so what we print is what it will sign with.
    let key = PrivateKey::from_pem(pem.as_bytes(), &path.display().to_string())
        .map_err(|e| KeygenError::Reload(e.to_string()))?;

    write_private(&path, pem.as_bytes())?;
    Ok(Generated {
        path,
        domain: domain_norm,
        selector: selector.to_string(),
        algorithm: key.algorithm,
        value: txt_value(key.algorithm, &key.public_key_base64()),
    })
}

/// Create `path` exclusively with mode 0600 (set at creation, so the key is never readable by
/// others, not even briefly), write and fsync it; on a write error remove the partial file.
fn write_private(path: &Path, data: &[u8]) -> Result<(), KeygenError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| KeygenError::Create {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeygenError::Exists(path.to_path_buf())
            } else {
                KeygenError::Create {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let written = file.write_all(data).and_then(|_| file.sync_all());
    if let Err(source) = written {
        let _ = std::fs::remove_file(path);
        return Err(KeygenError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

impl fmt::Display for Generated {
    /// What `keygen` prints on stdout: the zone-file record, then a comment line for DNS panels
    /// that take the bare value (the whole output stays valid zone-file syntax).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.zone_record())?;
        writeln!(
            f,
            "; DNS panel (one value, no quotes): name {} type TXT value {}",
            self.record_name(),
            self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_strings_short_and_joins_back() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(600));
        let parts = split_txt(&value);
        assert_eq!(parts[0], "v=DKIM1; k=rsa; ");
        assert!(parts.iter().all(|p| p.len() <= TXT_STRING_MAX));
        assert_eq!(parts.concat(), value);
        let rec = zone_record("s._domainkey.example.com", &value);
        assert!(rec.starts_with("s._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; \""));
        assert_eq!(parse_zone_strings(&rec).concat(), value);
    }

    #[test]
    fn names() {
        assert!(valid_name("s2026r"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a..b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn ed25519_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let g = keygen("Example.COM.", "e1", KeygenAlgorithm::Ed25519, dir.path()).unwrap();
        assert_eq!(g.path, dir.path().join("example.com.e1.pem"));
        assert!(g.value.starts_with("v=DKIM1; k=ed25519; p="));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&g.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            keygen("example.com", "e1", KeygenAlgorithm::Ed25519, dir.path()),
            Err(KeygenError::Exists(_))
        ));
    }
}

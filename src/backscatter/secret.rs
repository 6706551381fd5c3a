//! The tagging secrets file (`envelope_tagging.secret_file`): one secret per line; the first
//! line signs new tags, every line verifies. A key change is: put the new secret on the first
//! line and keep the old one below it until `max_age` has passed. Blank lines and lines
//! starting with `#` are ignored; each secret is at least 16 bytes (`openssl rand -hex 32`
//! makes a good one). The file must not be readable by every user: whoever reads it can make
//! tags that pass the bounce check.
//!
//! Imports nothing else of ours.

use super::prvs::Key;
use std::path::Path;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The secrets of one file, in file order.
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    /// Keys from secrets given directly (the first signs).
    pub fn from_secrets<S: AsRef<[u8]>>(secrets: &[S]) -> Result<Keys, String> {
        if secrets.is_empty() {
            return Err("no secret".into());
        }
        let mut keys = Vec::with_capacity(secrets.len());
        for s in secrets {
            let s = s.as_ref();
            if s.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "a secret is {} bytes; at least {MIN_SECRET_LEN} are needed",
                    s.len()
                ));
            }
            keys.push(Key::new(s));
        }
        Ok(Keys { keys })
    }

    /// Read the secrets file: readable by us, not by everyone, one secret per line.
    pub fn load(path: &Path) -> Result<Keys, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .permissions()
                .mode()
        };
        if mode & 0o006 != 0 {
            return Err(format!(
                "{} is {} by every user (mode {:04o}): anyone who reads it can get forged bounces \
                 accepted; chmod 0600 (or 0640 with a group that needs it)",
                path.display(),
                if mode & 0o002 != 0 {
                    "writable"
                } else {
                    "readable"
                },
                mode & 0o7777
            ));
        }
        let mut secrets: Vec<&[u8]> = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if line.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "{}:{}: a secret of {} bytes is too short (at least {MIN_SECRET_LEN}; \
                     `openssl rand -hex 32` makes a good one)",
                    path.display(),
                    i + 1,
                    line.len()
                ));
            }
            secrets.push(line);
        }
        if secrets.is_empty() {
            return Err(format!(
                "{} holds no secret (one per line; make one with `openssl rand -hex 32`)",
                path.display()
            ));
        }
        Keys::from_secrets(&secrets)
    }

    /// The key that makes new tags.
    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    /// Every key a tag may have been made with.
    pub fn all(&self) -> &[Key] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join("batv.key");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn first_line_signs_all_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "# new key first\n\nnew-secret-0123456789\r\n  old-secret-0123456789  \n",
            0o600,
        );
        let keys = Keys::load(&p).unwrap();
        assert_eq!(keys.all().len(), 2);
        assert_eq!(keys.signing().id(), Key::new(b"new-secret-0123456789").id());
        assert_eq!(keys.all()[1].id(), Key::new(b"old-secret-0123456789").id());
    }

    #[test]
    fn refused_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = Keys::load(&dir.path().join("missing")).err().unwrap();
        assert!(e.contains("cannot read"), "{e}");
        let p = write(dir.path(), "a-long-enough-secret-here\n", 0o644);
        let e = Keys::load(&p).err().unwrap();
        assert!(e.contains("readable by every user (mode 0644)"), "{e}");
        let p = write(dir.path(), "# only a comment\n\n", 0o600);
        let e = Keys::load(&p).err().unwrap();
        assert!(e.contains("holds no secret"), "{e}");
        let p = write(dir.path(), "a-long-enough-secret-here\nshort\n", 0o640);
        let e = Keys::load(&p).err().unwrap();
        assert!(
            e.contains("batv.key:2: a secret of 5 bytes is too short"),
            "{e}"
        );
    }
}

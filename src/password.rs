//! The password hashes of `clients[].password_hash`: argon2 (what `dkim-relay hash-password`
//! makes) or bcrypt. Checked at AUTH (on the bounded hash pool, reusing argon2's memory) and
//! made for the configuration. Imports nothing of ours.

/// Check a password against an argon2 or bcrypt hash string, with argon2's working memory in `memory`, which the caller keeps from
/// one check to the next (grown to the largest cost seen). A fresh 19 MiB allocation per check
/// is not given back to the system by glibc (argon2's blocks are 64-byte aligned): every check
/// left its memory behind, so reusing it is what bounds the pool's memory.
pub fn verify_password_in(hash: &str, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::{Output, PasswordHash};
    use argon2::{Algorithm, Argon2, Params, Version};
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        // Output's equality is constant-time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// Hash a password for the configuration (argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let mut memory = Vec::new();
        assert!(verify_password_in(&h, "s3cret", &mut Vec::new()));
        assert!(!verify_password_in(&h, "wrong", &mut Vec::new()));
        // Reused memory gives the same answers, for any cost and algorithm variant.
        assert!(verify_password_in(&h, "s3cret", &mut memory));
        assert!(!verify_password_in(&h, "s3cret ", &mut memory));
        let small = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(64, 1, 1, Some(20)).unwrap(),
        );
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let h2 = small.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_password_in(&h2, "pw", &mut memory));
        assert!(!verify_password_in(&h2, "pW", &mut memory));
        assert!(verify_password_in(&h, "s3cret", &mut memory));
        let b = bcrypt::hash("pw", 4).unwrap();
        assert!(verify_password_in(&b, "pw", &mut memory));
        assert!(!verify_password_in(
            "$argon2id$v=19$m=19456,t=2,p=1$bad",
            "pw",
            &mut memory
        ));
    }
}

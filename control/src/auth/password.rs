//! Password hashing (Argon2id, OWASP's parameters) and the password policy (NIST SP 800-63B:
//! length and a block list rather than composition rules).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};

fn hasher() -> Argon2<'static> {
    // 19 MiB, 2 passes, 1 lane: OWASP's minimum for Argon2id.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid parameters"))
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid params")
        .to_string()
}

/// Constant work whether or not the hash parses, so that timing does not tell whether an
/// account exists.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "123456789012",
    "qwertyuiop",
    "iloveyou",
    "letmein",
    "welcome",
    "administrator",
    "teletip",
    "changeme",
    "hospital",
    "doctor",
    "patient",
    "sifre",
    "parola",
];

/// Why a password is refused, or `None`.
pub fn policy_violation(password: &str, email: &str, min_length: usize) -> Option<String> {
    let chars = password.chars().count();
    if chars < min_length {
        return Some(format!("must be at least {min_length} characters"));
    }
    if chars > 256 {
        return Some("must be at most 256 characters".into());
    }
    let lower = password.to_lowercase();
    if let Some(local) = email.split('@').next().filter(|l| l.len() >= 3) {
        if lower.contains(&local.to_lowercase()) {
            return Some("must not contain the e-mail address".into());
        }
    }
    if COMMON.iter().any(|c| lower.contains(c)) {
        return Some("is too common".into());
    }
    if password.chars().all(|c| c == password.chars().next().unwrap_or(' ')) {
        return Some("must not repeat one character".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert_ne!(a, hash("correct horse battery"));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn policy() {
        assert!(policy_violation("short", "a@b.c", 12).is_some());
        assert!(policy_violation("my password is long", "a@b.c", 12).is_some());
        assert!(policy_violation("ayse.yilmaz-2026-x", "ayse.yilmaz@example.org", 12).is_some());
        assert!(policy_violation("aaaaaaaaaaaaaaaa", "a@b.c", 12).is_some());
        assert!(policy_violation("correct horse battery staple", "ayse@example.org", 12).is_none());
    }
}

//! Secrets: random tokens (stored as SHA-256) and passwords (stored as argon2id).
//!
//! Tokens carry a short prefix saying what they are (`fs_` session, `fk_` API
//! key, `fd_` device), so a leaked one is recognisable in logs and secret
//! scanners, and the server knows which table to look in without trying all.
//! Tokens have 256 bits of entropy, so a fast hash is enough to store them;
//! human-chosen passwords get argon2id, which is slow on purpose: call
//! [`hash_password`] and [`verify_password`] off the async threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a token grants; its prefix says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    ApiKey,
    Device,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "fs_",
            TokenKind::ApiKey => "fk_",
            TokenKind::Device => "fd_",
        }
    }

    /// Which kind a presented token claims to be, by its prefix.
    pub fn of(token: &str) -> Option<TokenKind> {
        [TokenKind::Session, TokenKind::ApiKey, TokenKind::Device]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }
}

/// A new random token: prefix + 43 characters of URL-safe base64-like hex (256 bits).
pub fn generate_token(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), hex::encode(bytes))
}

/// A short random id for objects the server names (users, keys, credentials).
pub fn generate_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// Shortest password accepted for a user, by the API and the command line.
pub const MIN_USER_PASSWORD_LEN: usize = 8;

/// A random password for the first admin when none is configured.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token: SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The stored form of a password: an argon2id PHC string. Slow by design.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 default parameters are valid")
        .to_string()
}

/// Checks a password against its stored PHC string. A malformed stored hash
/// verifies as false rather than erroring: it can only mean "no access".
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so that a login
/// for an unknown email takes as long as one with a wrong password.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("ferrule-timing-equaliser"))
}

/// The `sha256:HEX` fingerprint of a DER certificate, as devices register it.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Normalises an X.509 fingerprint to `sha256:` + lowercase hex without
/// separators; `None` when it is not a SHA-256 fingerprint.
pub fn normalize_fingerprint(fp: &str) -> Option<String> {
    let hexpart = fp
        .strip_prefix("sha256:")
        .or_else(|| fp.strip_prefix("SHA256:"))?;
    let clean: String = hexpart
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (clean.len() == 64 && clean.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("sha256:{clean}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_distinct() {
        let a = generate_token(TokenKind::Device);
        let b = generate_token(TokenKind::Device);
        assert!(a.starts_with("fd_") && a.len() >= 32 + 3);
        assert_ne!(a, b);
        assert_eq!(TokenKind::of(&a), Some(TokenKind::Device));
        assert_eq!(TokenKind::of("nope"), None);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn fingerprints_normalise() {
        let hex = "AB".repeat(32);
        let colons = (0..32).map(|_| "ab").collect::<Vec<_>>().join(":");
        let want = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            normalize_fingerprint(&format!("sha256:{hex}")),
            Some(want.clone())
        );
        assert_eq!(
            normalize_fingerprint(&format!("SHA256:{colons}")),
            Some(want)
        );
        assert_eq!(normalize_fingerprint("sha1:abcd"), None);
        assert_eq!(normalize_fingerprint("sha256:zz"), None);
    }
}

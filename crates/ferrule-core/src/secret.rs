//! Secrets: random tokens (stored as SHA-256) and passwords (stored as argon2id).
//!
//! Tokens carry a short prefix saying what they are (`fs_` session, `fk_` API
//! key, `fd_` device), so a leaked one is recognisable in logs and secret
//! scanners, and the server knows which table to look in without trying all.
//! Tokens have 256 bits of entropy, so a fast hash is enough to store them;
//! human-chosen passwords get argon2id, which is slow on purpose: call
//! [`hash_password`] and [`verify_password`] off the async threads. A
//! server hashes on a few dedicated threads, each with a [`HashMemory`] it
//! keeps: argon2id works in 19 MiB, and allocating that per login let the
//! allocator keep hundreds of megabytes after a login flood.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// What a dashboard's share token starts with. It opens one dashboard,
/// read only, on its own route: it is no bearer credential.
pub const SHARE_TOKEN_PREFIX: &str = "fv_";

/// A new share token: like every token, 256 random bits.
pub fn generate_share_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SHARE_TOKEN_PREFIX}{}", hex::encode(bytes))
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
    HashMemory::default().hash_password(password)
}

/// Checks a password against its stored PHC string. A malformed stored hash
/// verifies as false rather than erroring: it can only mean "no access".
pub fn verify_password(password: &str, stored: &str) -> bool {
    HashMemory::default().verify_password(password, stored)
}

/// The most argon2 memory a stored hash may ask for (64 MiB): ours use
/// 19 MiB; a hash asking for more was not made by this server.
const MAX_HASH_BLOCKS: usize = 64 * 1024;

/// Argon2's working memory, kept between hashes so that a thread that
/// hashes all day allocates it once.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashMemory")
            .field("bytes", &(self.blocks.len() * Block::SIZE))
            .finish()
    }
}

impl HashMemory {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// The first `n` blocks, grown (once) when too few.
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.blocks.len() < n {
            self.blocks.resize(n, Block::new());
        }
        &mut self.blocks[..n]
    }

    /// [`hash_password`] in this memory.
    pub fn hash_password(&mut self, password: &str) -> String {
        let mut raw_salt = [0u8; 16];
        rand::rng().fill_bytes(&mut raw_salt);
        let salt = SaltString::encode_b64(&raw_salt).expect("16 bytes is a valid salt length");
        let argon = Argon2::default();
        let params = argon.params().clone();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        argon
            .hash_password_into_with_memory(
                password.as_bytes(),
                &raw_salt,
                &mut out,
                self.blocks(params.block_count()),
            )
            .expect("argon2 default parameters are valid");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&params).try_into().expect("default parameters encode"),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).expect("32 bytes is a valid output")),
        }
        .to_string()
    }

    /// [`verify_password`] in this memory.
    pub fn verify_password(&mut self, password: &str, stored: &str) -> bool {
        self.try_verify(password, stored).unwrap_or(false)
    }

    fn try_verify(&mut self, password: &str, stored: &str) -> Option<bool> {
        let hash = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).ok()?;
        let expected = hash.hash?;
        let mut salt = [0u8; 64];
        let salt = hash.salt?.decode_b64(&mut salt).ok()?;
        let blocks = params.block_count();
        if blocks > MAX_HASH_BLOCKS {
            return None;
        }
        let mut out = [0u8; Output::MAX_LENGTH];
        let out = &mut out[..expected.len()];
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password.as_bytes(), salt, out, self.blocks(blocks))
            .ok()?;
        // `Output`'s equality is constant-time.
        Some(Output::new(out).ok()? == expected)
    }
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
    fn kept_memory_agrees_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = HashMemory::default();
        // Ours verifies with the crate's verifier, and the crate's with ours,
        // reusing one memory across hashes.
        let ours = memory.hash_password("correct horse");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(memory.verify_password("battery staple", &theirs));
        assert!(!memory.verify_password("battery stapler", &theirs));
        assert!(memory.verify_password("correct horse", &ours));
        assert_eq!(memory.bytes(), 19 * 1024 * 1024);
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

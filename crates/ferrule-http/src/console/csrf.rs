//! Cross-site request forgery defence for the console's state-changing
//! requests.
//!
//! Two independent checks, both required:
//! - a token bound to the session: HMAC-SHA-256 of the session token under
//!   a key drawn at start-up, sent in forms as the `csrf` field and by htmx
//!   as `X-CSRF-Token`. Another site can make a browser send our cookie
//!   but can neither read the page that holds the token nor compute it.
//!   A restart draws a new key: open pages then get the "reload" page once.
//! - where the browser says where a request comes from (`Origin`,
//!   `Sec-Fetch-Site`), it must be this host.
//!
//! The login form, which has no session yet, binds its token to a random
//! pre-login cookie instead (login CSRF would log a victim into the
//! attacker's account).

use std::sync::OnceLock;

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The form field that carries the token.
pub const FIELD: &str = "csrf";
/// The header htmx sends it in (`hx-headers` on `<body>`).
pub const HEADER: &str = "x-csrf-token";

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

fn mac(purpose: &str, secret: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key()).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(secret.as_bytes());
    mac
}

/// The token for pages of the session with this session token.
pub fn session_token(session: &str) -> String {
    hex::encode(mac("session", session).finalize().into_bytes())
}

/// The token for the login form of a browser holding this pre-login nonce.
pub fn login_token(nonce: &str) -> String {
    hex::encode(mac("login", nonce).finalize().into_bytes())
}

fn verify(purpose: &str, secret: &str, presented: &str) -> bool {
    let Ok(bytes) = hex::decode(presented) else {
        return false;
    };
    // Constant time: a guesser learns nothing from how long a refusal takes.
    mac(purpose, secret).verify_slice(&bytes).is_ok()
}

/// A tag over `message` for another purpose than forms (the custom apps'
/// passes): the same start-up key, kept apart by the purpose.
pub fn tag(purpose: &str, message: &str) -> String {
    hex::encode(mac(purpose, message).finalize().into_bytes())
}

/// Whether `presented` is [`tag`]`(purpose, message)`, in constant time.
pub fn verify_tag(purpose: &str, message: &str, presented: &str) -> bool {
    verify(purpose, message, presented)
}

pub fn verify_session(session: &str, presented: &str) -> bool {
    verify("session", session, presented)
}

pub fn verify_login(nonce: &str, presented: &str) -> bool {
    verify("login", nonce, presented)
}

/// Whether the browser's own account of the request's origin, where it
/// gives one, is this host. Browsers send `Origin` on every POST and
/// `Sec-Fetch-Site` on every request; other clients send neither and are
/// judged by the token alone.
pub fn same_origin(parts: &Parts) -> bool {
    same_origin_headers(&parts.headers)
}

pub fn same_origin_headers(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: the user typed or bookmarked the URL.
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    // The authority only: behind a proxy that ends TLS the scheme we see
    // differs from the browser's; the host does not.
    matches!((origin_authority, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_token_verifies_only_for_its_session_and_purpose() {
        let t = session_token("fs_abc");
        assert!(verify_session("fs_abc", &t));
        assert!(!verify_session("fs_abd", &t));
        assert!(!verify_login("fs_abc", &t));
        assert!(!verify_session("fs_abc", ""));
        assert!(!verify_session("fs_abc", "zz"));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origins_other_than_this_host_are_refused() {
        assert!(same_origin_headers(&headers(&[("host", "a.io:8080")])));
        assert!(same_origin_headers(&headers(&[
            ("host", "a.io:8080"),
            ("origin", "http://a.io:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin_headers(&headers(&[
            ("host", "a.io:8080"),
            ("origin", "http://evil.io"),
        ])));
        assert!(!same_origin_headers(&headers(&[
            ("host", "a.io:8080"),
            ("origin", "null"),
        ])));
        assert!(!same_origin_headers(&headers(&[
            ("host", "a.io:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin_headers(&headers(&[
            ("host", "a.io:8080"),
            ("sec-fetch-site", "same-site"),
        ])));
    }
}

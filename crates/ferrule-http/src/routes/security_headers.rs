//! Headers every response carries for the browser's sake.
//!
//! - Every response: `X-Content-Type-Options: nosniff`, so a JSON or text
//!   body is never run as a script or page.
//! - HTML pages (`/`, `/api/docs`): a Content-Security-Policy that allows
//!   only our own stylesheet and links (no script at all, no framing),
//!   `X-Frame-Options: DENY` for older browsers, and
//!   `Referrer-Policy: no-referrer`.
//! - Every `/api/v1` response: `Cache-Control: no-store`. Such responses are
//!   per caller and some carry a secret shown once (a login token, a
//!   created API key's secret, a device token issued or rotated); none may
//!   stay in a browser's or a proxy's cache. Routes that set their own
//!   `Cache-Control` keep it.
//!
//! The console's pages (see `console`) set their own policy, which allows
//! our own scripts, and their own referrer policy (`same-origin`: with
//! `no-referrer` browsers send `Origin: null` on form posts, which the
//! console's CSRF check must be able to read); these fill in only where
//! none is set.
//!
//! HSTS is added by the HTTPS listener (see `server`), as only it knows the
//! connection is secure.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn add(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/v1/");
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
        }
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        if !headers.contains_key(header::REFERRER_POLICY) {
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        }
    }
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

//! Console form bodies (`application/x-www-form-urlencoded`).

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::page::Failure;

/// Parses a form; the `csrf` field, already checked, is ignored by the
/// target types (they do not deny unknown fields).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "Form not understood",
            format!("The form could not be read ({e}). Reload the page and try again."),
        )
    })
}

/// An optional text field: empty or blank means absent.
pub fn optional(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

//! `GET /live`: the live stream (`/api/v1/stream`) for console pages.
//!
//! A browser cannot set `Authorization` on a WebSocket, and the long-lived
//! session token must not appear in page HTML or a URL. So this endpoint
//! takes the session cookie — but only on an upgrade whose `Origin` is this
//! host (a WebSocket is not bound by CORS: any site could open one with the
//! user's cookie otherwise) — and hands the request to the API's stream
//! with the session as its bearer. Everything else (ACL rules, caps,
//! closing when the session ends) is the stream's.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::csrf;
use super::session::Console;
use crate::routes::stream;
use crate::state::AppState;

pub async fn open(
    State(state): State<AppState>,
    console: Console,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    // Browsers always send Origin on a WebSocket upgrade: one without it
    // is not a console page.
    if !headers.contains_key(header::ORIGIN) || !csrf::same_origin_headers(headers) {
        return (
            StatusCode::FORBIDDEN,
            "the console's live stream is for the console's own pages",
        )
            .into_response();
    }
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", console.token)) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, bearer);
    // The tenant the console acts in, as `X-Tenant` (checked again there).
    if let Ok(tenant) = HeaderValue::from_str(console.caller.tenant.as_str()) {
        headers.insert("x-tenant", tenant);
    }
    stream::open(State(state), ws, request).await
}

//! The live stream, `GET /api/v1/stream`: a WebSocket on which a user or an
//! API key subscribes to topic filters of its tenant and receives, as JSON,
//! every message the router routes there — telemetry, events, state,
//! commands, and the internal twin and connectivity topics.
//!
//! A stream is the router's subscriber like an MQTT session, under the same
//! ACL rules as the caller's MQTT connection would be, but read-only and
//! without QoS state: its inbox is bounded, and a reader that falls behind
//! is closed with the reason rather than silently skipped
//! ([`inbox`]). The open streams are kept in [`LiveStreams`]: caps per
//! identity and per tenant, and closing an identity's streams when its
//! access changes. One task per stream ([`session`]) owns the socket.

mod inbox;
mod observe;
mod protocol;
mod registry;
mod session;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, request::Parts};
use axum::response::{IntoResponse, Response};
use ferrule_core::secret::TokenKind;
use ferrule_core::{Principal, PrincipalKind};

pub use inbox::InboxBounds;
pub use registry::{LiveStreams, StreamLimits};

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::bearer;
use crate::state::AppState;
use observe::{RefusedReason, StreamRefused};
use registry::Full;
use session::StreamSession;

/// What the URL may carry.
struct StreamQuery {
    filters: Vec<String>,
    access_token: Option<String>,
    /// What `X-Tenant` says elsewhere, for browsers.
    tenant: Option<String>,
}

fn parse_query(parts: &Parts) -> ApiResult<StreamQuery> {
    let mut query = StreamQuery {
        filters: Vec::new(),
        access_token: None,
        tenant: None,
    };
    let raw = parts.uri.query().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "filter" => query.filters.push(value.into_owned()),
            "access_token" => query.access_token = Some(value.into_owned()),
            "tenant" => query.tenant = Some(value.into_owned()),
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter: a stream takes `filter` (repeatable), \
                     `access_token` and `tenant`",
                ));
            }
        }
    }
    Ok(query)
}

/// Open a live stream (WebSocket).
///
/// Subscribes to topic filters of the caller's tenant and sends each
/// matching message as a JSON text frame. Filters come from `filter`
/// (repeatable) and from client frames `{"op":"subscribe","filters":[…]}` /
/// `{"op":"unsubscribe","filters":[…]}`; each subscribe is answered with
/// `{"type":"subscribed","filters":[{"filter","granted","reason"?}]}`, then
/// the retained messages it matches. Messages:
/// `{"type":"message","topic","kind","device"?,"payload"|"payload_base64","qos","retain","ts"}`.
/// Browsers cannot set headers on a WebSocket: they pass the session token
/// or API key as `access_token` (and an admin's `X-Tenant` as `tenant`). Users and API keys of every role may
/// stream; the tenant's ACL rules decide what they receive.
#[utoipa::path(get, operation_id = "openStream", path = "/api/v1/stream", tag = "stream",
    params(
        ("filter" = Option<Vec<String>>, Query, explode = true, max_items = 64,
            description = "A topic filter to subscribe to at once (repeatable; at most 64)"),
        ("access_token" = Option<String>, Query,
            description = "The session token or API key, for clients that cannot send `Authorization`"),
        ("tenant" = Option<String>, Query,
            description = "Admins only: the tenant to stream, as `X-Tenant` (for clients that cannot send it)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket stream"),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "an unknown query parameter, or too many filters"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json",
            description = "a device token: streams are for users and API keys"),
        (status = 426, body = Problem, content_type = "application/problem+json",
            description = "not a WebSocket upgrade request"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "the identity or the tenant has as many streams open as it may"),
    ))]
pub async fn open(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> Response {
    match admit(state, ws, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn admit(
    state: AppState,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: Request,
) -> ApiResult<Response> {
    let (mut parts, _) = request.into_parts();
    let query = parse_query(&parts)?;
    if bearer(&parts.headers).is_none()
        && let Some(token) = &query.access_token
    {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::Unauthorized("missing, invalid or expired credentials"))?;
        parts.headers.insert(AUTHORIZATION, value);
    }
    if !parts.headers.contains_key("x-tenant")
        && let Some(tenant) = &query.tenant
    {
        let value = HeaderValue::from_str(tenant)
            .map_err(|_| ApiError::invalid("tenant", "not a valid tenant id"))?;
        parts.headers.insert("x-tenant", value);
    }
    let token = bearer(&parts.headers)
        .ok_or(ApiError::Unauthorized(
            "missing, invalid or expired credentials",
        ))?
        .to_owned();
    if TokenKind::of(&token) == Some(TokenKind::Device) {
        // A valid device token is told why; any other is just unknown.
        state.identity.authenticate_device_token(&token).await?;
        StreamRefused {
            reason: RefusedReason::Device,
        }
        .emit();
        return Err(ApiError::Forbidden(
            "devices cannot open a live stream: they subscribe over MQTT",
        ));
    }
    let caller = Caller::from_request_parts(&mut parts, &state).await?;
    let streams = state.streams.clone();
    let max = streams.limits().filters;
    if query.filters.len() > max {
        return Err(ApiError::invalid(
            "filter",
            format!("a stream holds at most {max} filters"),
        ));
    }
    let ws = ws.map_err(|_| ApiError::UpgradeRequired)?;
    let router = state.telemetry()?.router.clone();
    let owner = caller.principal.session_owner();
    let admitted = streams.admit(&caller.tenant, owner).map_err(|full| {
        let (reason, detail) = match full {
            Full::Identity(n) => (
                RefusedReason::IdentityLimit,
                format!("you already have {n} live streams open: close one first"),
            ),
            Full::Tenant(n) => (
                RefusedReason::TenantLimit,
                format!("this tenant already has {n} live streams open: close one first"),
            ),
        };
        StreamRefused { reason }.emit();
        ApiError::TooManyRequests {
            detail,
            retry_after: 5,
        }
    })?;
    let who = Principal {
        tenant: caller.tenant.clone(),
        kind: caller.principal.kind.clone(),
    };
    debug_assert!(!matches!(who.kind, PrincipalKind::Device { .. }));
    let session = StreamSession {
        identity: state.identity.clone(),
        acl: state.acl.clone(),
        directory: state.directory.clone(),
        router,
        streams: streams.clone(),
        admitted,
        tenant: caller.tenant,
        who,
        token,
        initial: query.filters,
    };
    let limits = streams.limits();
    let tasks = streams.tasks().clone();
    Ok(ws
        .max_message_size(limits.max_client_frame)
        .max_frame_size(limits.max_client_frame)
        .on_upgrade(move |socket| tasks.track_future(session.run(socket))))
}

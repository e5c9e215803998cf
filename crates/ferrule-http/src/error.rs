//! The one mapping from failures to HTTP: RFC 9457 problem+json.
//!
//! Handlers return [`ApiError`]; its [`IntoResponse`] is the only place that
//! chooses a status and writes a problem document. Internal causes are logged
//! and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrule_store::{AuthError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document, as every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, as a path (`password`, `items[2].id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where in the field's text the problem is (a rule's SQL): 1-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed or a field is invalid.
    Invalid {
        field: Option<String>,
        detail: String,
    },
    /// A text field (a rule's SQL) is invalid at a line and column.
    InvalidAt {
        field: String,
        line: u64,
        column: u64,
        detail: String,
    },
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound(&'static str),
    MethodNotAllowed,
    Conflict(String),
    /// 412: `If-Match` names a version that is no longer current.
    PreconditionFailed(String),
    PayloadTooLarge(usize),
    /// 413 for a bounded document within the body (a twin, parameters).
    TooLarge(String),
    /// 504: a device did not answer in time.
    GatewayTimeout(String),
    /// One field of the body is larger than its own bound (413).
    FieldTooLarge {
        field: String,
        limit: usize,
    },
    UnsupportedMediaType,
    /// The request body did not arrive in time.
    RequestTimeout(String),
    Unavailable(String),
    /// The tenant's storage budget is used up.
    InsufficientStorage(String),
    /// 426: a WebSocket endpoint asked without the upgrade.
    UpgradeRequired,
    /// 429: too many failed logins; retry after so many seconds.
    TooManyRequests {
        detail: String,
        retry_after: u64,
    },
    /// 503 with `Retry-After`: a bounded queue is full.
    Busy {
        detail: String,
        retry_after: u64,
    },
    /// A bug or backend failure; the detail goes to the log only.
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String, Option<String>) {
        match self {
            ApiError::Invalid { field, detail } => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                detail.clone(),
                field.clone(),
            ),
            ApiError::InvalidAt {
                field,
                line,
                column,
                detail,
            } => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                format!("{field}: line {line}, column {column}: {detail}"),
                Some(field.clone()),
            ),
            ApiError::Unauthorized(d) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", (*d).into(), None)
            }
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", (*d).into(), None),
            ApiError::NotFound(kind) => (
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{kind} not found"),
                None,
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this method is not allowed on this resource".into(),
                None,
            ),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, "conflict", d.clone(), None),
            ApiError::PreconditionFailed(d) => (
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                d.clone(),
                None,
            ),
            ApiError::TooLarge(d) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                d.clone(),
                None,
            ),
            ApiError::GatewayTimeout(d) => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway-timeout",
                d.clone(),
                None,
            ),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the request body is larger than the limit of {limit} bytes (http.max_body_bytes)"
                ),
                None,
            ),
            ApiError::FieldTooLarge { field, limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("{field} is larger than its limit of {limit} bytes"),
                Some(field.clone()),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as JSON with Content-Type: application/json".into(),
                None,
            ),
            ApiError::RequestTimeout(d) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                d.clone(),
                None,
            ),
            ApiError::Unavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                d.clone(),
                None,
            ),
            ApiError::UpgradeRequired => (
                StatusCode::UPGRADE_REQUIRED,
                "upgrade-required",
                "this is a WebSocket endpoint: connect with a WebSocket client \
                 (Connection: Upgrade, Upgrade: websocket)"
                    .into(),
                None,
            ),
            ApiError::TooManyRequests { detail, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                detail.clone(),
                None,
            ),
            ApiError::Busy { detail, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                detail.clone(),
                None,
            ),
            ApiError::InsufficientStorage(d) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient-storage",
                d.clone(),
                None,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged".into(),
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error serving request");
        }
        let (status, kind, detail, field) = self.parts();
        let (line, column) = match &self {
            ApiError::InvalidAt { line, column, .. } => (Some(*line), Some(*column)),
            _ => (None, None),
        };
        let problem = Problem {
            kind: format!("https://ferrule.dev/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            field,
            line,
            column,
        };
        let mut resp = (status, axum::Json(problem)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::TooManyRequests { retry_after, .. } | ApiError::Busy { retry_after, .. } =
            &self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind } => ApiError::NotFound(kind),
            StoreError::Conflict { kind } => ApiError::Conflict(format!("{kind} already exists")),
            StoreError::Refused(why) => ApiError::Conflict(why),
            StoreError::Outranked => ApiError::Forbidden(
                "you cannot change or delete a user whose role is above your own",
            ),
            e @ StoreError::SchemaTooNew { .. } => ApiError::Unavailable(e.to_string()),
            StoreError::Busy => ApiError::Busy {
                detail: StoreError::Busy.to_string(),
                retry_after: 1,
            },
            StoreError::Backend(cause) => ApiError::Internal(cause.to_string()),
        }
    }
}

impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(e: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError as E;
        match e {
            E::Store(e) => e.into(),
            E::Telemetry(e) => e.into(),
            e @ E::TimedOut(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The router's intake refused a message (HTTP ingest): the same refusals
/// an MQTT publisher reads in its PUBACK, in HTTP terms.
impl From<ferrule_bus::Refused> for ApiError {
    fn from(refused: ferrule_bus::Refused) -> Self {
        use ferrule_bus::Refused;
        match refused {
            Refused::Invalid(why) => ApiError::Invalid {
                // A refused timestamp names its field, as the payload
                // contract's messages for `ts` start with it.
                field: why.starts_with("`ts`").then(|| "ts".to_owned()),
                detail: why,
            },
            Refused::UnknownDevice(_) => ApiError::NotFound("device"),
            Refused::QuotaExceeded(why) => ApiError::InsufficientStorage(why),
            // Storage is behind: the client retries shortly, by which time
            // sealing has caught up (telemetry backpressure).
            Refused::Unavailable(why) => ApiError::Busy {
                detail: why,
                retry_after: 1,
            },
            Refused::Forbidden(_) => ApiError::Forbidden("this topic is written by Ferrule"),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        crate::observe::AuthFailed {
            transport: "http",
            reason: e.label(),
        }
        .emit();
        match e {
            AuthError::Store(s) => s.into(),
            AuthError::Throttled {
                scope,
                retry_after,
                tenant,
            } => {
                crate::observe::AuthThrottled {
                    channel: "http",
                    scope: scope.label(),
                    tenant: tenant.as_ref(),
                }
                .emit();
                ApiError::TooManyRequests {
                    detail: "too many failed logins for this account or address: retry later"
                        .into(),
                    retry_after: whole_seconds(retry_after),
                }
            }
            AuthError::Busy => ApiError::Busy {
                detail: "the server is busy checking passwords: retry shortly".into(),
                retry_after: 1,
            },
            // One answer for all, so probing learns nothing.
            _ => ApiError::Unauthorized("missing, invalid or expired credentials"),
        }
    }
}

/// A `Retry-After` in whole seconds, rounded up and at least 1.
pub fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<ferrule_store::telemetry::TelemetryError> for ApiError {
    fn from(e: ferrule_store::telemetry::TelemetryError) -> Self {
        use ferrule_store::telemetry::TelemetryError as E;
        match e {
            E::InvalidQuery(why) => ApiError::Invalid {
                field: None,
                detail: why,
            },
            e @ E::QuotaExceeded { .. } => ApiError::InsufficientStorage(e.to_string()),
            e @ (E::Overloaded | E::Closed) => ApiError::Unavailable(e.to_string()),
            E::Storage(cause) => ApiError::Internal(cause.to_string()),
        }
    }
}

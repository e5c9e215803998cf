//! Login, logout and "who am I".

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ferrule_core::PrincipalKind;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::UserView;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ClientIp, JsonBody, bearer};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub user: UserView,
}

/// Exchange email and password for a bearer token.
#[utoipa::path(post, operation_id = "login", path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem),
        (status = 429, body = Problem, description = "too many failed logins for this account or address; see Retry-After"),
        (status = 503, body = Problem, description = "password checking is busy; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(source): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let session = state
        .identity
        .login(&req.email, &req.password, source)
        .await?;
    Ok(Json(LoginResponse {
        token: session.token,
        expires_at: session.expires_at,
        user: session.user.into(),
    }))
}

/// End the session of the bearer token; it stops working at once.
#[utoipa::path(post, operation_id = "logout", path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    if !matches!(caller.principal.kind, PrincipalKind::User { .. }) {
        return Err(ApiError::Forbidden(
            "only login sessions log out; revoke an API key instead",
        ));
    }
    if let Some(token) = bearer(&headers) {
        state.identity.logout(token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `user` or `api_key`.
    pub kind: &'static str,
    pub id: String,
    /// The tenant this request acts in.
    pub tenant: String,
    #[schema(value_type = String)]
    pub role: ferrule_core::Role,
}

/// The caller's identity and the tenant it acts in.
#[utoipa::path(get, operation_id = "whoAmI", path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)))]
pub async fn me(caller: Caller) -> ApiResult<Json<WhoAmI>> {
    let (kind, id) = match &caller.principal.kind {
        PrincipalKind::User { id, .. } => ("user", id.clone()),
        PrincipalKind::ApiKey { id, .. } => ("api_key", id.clone()),
        _ => {
            return Err(ApiError::Unauthorized(
                "missing, invalid or expired credentials",
            ));
        }
    };
    Ok(Json(WhoAmI {
        kind,
        id,
        tenant: caller.tenant.into(),
        role: caller.role,
    }))
}

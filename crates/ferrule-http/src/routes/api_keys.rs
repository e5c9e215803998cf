//! API keys of the caller's tenant: owners and admins manage them.

use super::vocabulary::RoleName;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_core::{PrincipalKind, Role};
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{ApiKeyView, CreatedApiKey};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(pattern = "\\S", min_length = 1)]
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
    /// When the key stops working (RFC 3339); never if absent.
    /// When the key stops working; never when absent. A time already past
    /// makes a key that is expired from the start.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// An expiry must lie ahead, or the secret would be dead on arrival.
/// Lists the tenant's API keys (never their secrets).
#[utoipa::path(get, operation_id = "listApiKeys", path = "/api/v1/api-keys", tag = "api-keys", params(PageQuery),
    responses((status = 200, body = Paged<ApiKeyView>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<ApiKeyView>>> {
    caller.require_access_admin()?;
    let page = state
        .store()
        .list_api_keys(&caller.tenant, &q.to_request()?)
        .await?;
    Ok(Json(Paged::from_page(page, ApiKeyView::from)))
}

/// Create a key; its secret is in this response and never again.
///
/// The key records its creator (the calling user or key) and never does
/// more than its creator may do now: demoting the creator limits the key,
/// deleting or revoking the creator revokes it.
#[utoipa::path(post, operation_id = "createApiKey", path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "a key made by keys more than 8 deep")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    caller.require_access_admin()?;
    if !caller.role.can_grant(req.role) {
        return Err(ApiError::Forbidden(
            "you cannot grant a role above your own",
        ));
    }
    if req.name.trim().is_empty() {
        return Err(ApiError::invalid("name", "must not be empty"));
    }
    // A time already past is accepted: it makes a key expired from the
    // start (as the view shows). Refusing it would be a rule that depends on
    // the clock, which the API document cannot state.
    let expires_at = req.expires_at;
    let created_by = match &caller.principal.kind {
        PrincipalKind::User { id, .. } | PrincipalKind::ApiKey { id, .. } => id.as_str(),
        PrincipalKind::Device { .. } | PrincipalKind::Anonymous => {
            return Err(ApiError::Forbidden("only users and API keys create keys"));
        }
    };
    let (key, secret) = state
        .identity
        .create_api_key(&caller.tenant, &req.name, req.role, expires_at, created_by)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: key.into(),
            secret,
        }),
    ))
}

/// Reads one API key.
#[utoipa::path(get, operation_id = "getApiKey", path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    caller.require_access_admin()?;
    let key = state.store().get_api_key(&caller.tenant, &id).await?;
    // A revoked (deleted) key is gone from the API, as after any DELETE;
    // the listing keeps it, with `revoked_at`, for audit.
    if key.revoked_at.is_some() {
        return Err(ApiError::NotFound("api key"));
    }
    Ok(Json(key.into()))
}

/// Revoke a key, and the keys it created: they stop working at once and
/// stay listed, marked revoked.
#[utoipa::path(delete, operation_id = "revokeApiKey", path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_access_admin()?;
    state
        .store()
        .revoke_api_key(&caller.tenant, &id, Timestamp::now())
        .await?;
    state.disconnect_mqtt(&caller.tenant, Some(PrincipalKind::api_key_owner(&id)));
    disconnect_keys_made_by(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Closes the MQTT connections of every key `creator` (a user or a key)
/// made, directly or through other keys, in whichever tenant: their rights
/// just changed or ended.
pub(super) async fn disconnect_keys_made_by(state: &AppState, creator: &str) -> ApiResult<()> {
    for key in state.store().api_keys_made_by(creator).await? {
        state.disconnect_mqtt(&key.tenant, Some(PrincipalKind::api_key_owner(&key.id)));
    }
    Ok(())
}

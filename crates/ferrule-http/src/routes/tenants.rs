//! Tenants: admin only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_core::TenantId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::TenantView;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::lifecycle;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Letters, digits, `-`, `_`, `.`; at most 64.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: String,
}

/// Path ids that cannot be valid are simply not found.
fn tenant_id(id: &str) -> Result<TenantId, ApiError> {
    TenantId::new(id).map_err(|_| ApiError::NotFound("tenant"))
}

/// Lists tenants (admins).
#[utoipa::path(get, operation_id = "listTenants", path = "/api/v1/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, body = Paged<TenantView>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<TenantView>>> {
    caller.require_admin()?;
    let page = state.store().list_tenants(&q.to_request()?).await?;
    Ok(Json(Paged::from_page(page, TenantView::from)))
}

/// Creates a tenant (admins).
#[utoipa::path(post, operation_id = "createTenant", path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    caller.require_admin()?;
    let id = TenantId::new(&req.id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
    let name = req.name.unwrap_or_else(|| req.id.clone());
    let tenant = lifecycle::create_tenant(&state, &id, &name).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Reads one tenant (admins).
#[utoipa::path(get, operation_id = "getTenant", path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = TenantView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    caller.require_admin()?;
    Ok(Json(
        state.store().get_tenant(&tenant_id(&id)?).await?.into(),
    ))
}

/// Renames a tenant (admins).
#[utoipa::path(patch, operation_id = "updateTenant", path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    request_body = UpdateTenant,
    responses((status = 200, body = TenantView), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateTenant>,
) -> ApiResult<Json<TenantView>> {
    caller.require_admin()?;
    Ok(Json(
        state
            .store()
            .rename_tenant(&tenant_id(&id)?, &req.name)
            .await?
            .into(),
    ))
}

/// Deletes the tenant and everything it owns: users, API keys, devices and
/// their credentials, ACL rules, MQTT connections, sessions and retained
/// messages, telemetry, events and telemetry settings. A tenant created
/// again under this id starts empty. `default` cannot be deleted.
#[utoipa::path(delete, operation_id = "deleteTenant", path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted; stored telemetry is removed from disk in the background"),
        (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 503, body = Problem, description = "Not finished in time; repeat the request")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    lifecycle::delete_tenant(&state, &tenant_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Users of the caller's tenant: owners and admins manage them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_core::Role;
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::UserView;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// Shortest password accepted for a user.
const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    #[schema(value_type = String, example = "editor")]
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    pub password: Option<String>,
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

fn check_email(e: &str) -> Result<(), ApiError> {
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid("email", "not an email address"))
    }
}

fn check_grant(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if !caller.role.can_grant(role) {
        return Err(ApiError::Forbidden(
            "you cannot grant a role above your own",
        ));
    }
    if role.is_admin() && caller.tenant != ferrule_core::TenantId::default_tenant() {
        return Err(ApiError::invalid(
            "role",
            "admins belong to the default tenant",
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Paged<UserView>), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<UserView>>> {
    caller.require_access_admin()?;
    let page = state
        .store()
        .list_users(&caller.tenant, &q.to_request()?)
        .await?;
    Ok(Json(Paged::from_page(page, UserView::from)))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 409, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.require_access_admin()?;
    check_email(&req.email)?;
    check_password(&req.password)?;
    check_grant(&caller, req.role)?;
    let user = state
        .identity
        .create_user(&caller.tenant, &req.email, &req.password, req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<UserView>> {
    // Everyone may read their own record; reading others needs owner.
    if caller.user_id() != Some(id.as_str()) {
        caller.require_access_admin()?;
    }
    Ok(Json(
        state.store().get_user(&caller.tenant, &id).await?.into(),
    ))
}

/// Change a user's role or password. Either change ends the user's sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
    request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 404, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let own = caller.user_id() == Some(id.as_str());
    // Anyone may change their own password; everything else needs owner.
    if !(own && req.role.is_none()) {
        caller.require_access_admin()?;
    }
    if let Some(p) = &req.password {
        check_password(p)?;
    }
    if let Some(role) = req.role {
        check_grant(&caller, role)?;
        // A target above the caller (an owner editing an admin) is out of reach.
        let target = state.store().get_user(&caller.tenant, &id).await?;
        if !caller.role.can_grant(target.role) {
            return Err(ApiError::Forbidden(
                "you cannot change a user whose role is above your own",
            ));
        }
    }
    let user = state
        .identity
        .update_user(&caller.tenant, &id, req.role, req.password.as_deref())
        .await?;
    // Like its login sessions, the user's MQTT connections end on a change.
    state.disconnect_mqtt(
        &caller.tenant,
        Some(ferrule_core::PrincipalKind::user_owner(&id)),
    );
    Ok(Json(user.into()))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_access_admin()?;
    if caller.user_id() == Some(id.as_str()) {
        return Err(ApiError::Conflict(
            "you cannot delete yourself; ask another owner".into(),
        ));
    }
    let target = state.store().get_user(&caller.tenant, &id).await?;
    if !caller.role.can_grant(target.role) {
        return Err(ApiError::Forbidden(
            "you cannot delete a user whose role is above your own",
        ));
    }
    state.store().delete_user(&caller.tenant, &id).await?;
    state.disconnect_mqtt(
        &caller.tenant,
        Some(ferrule_core::PrincipalKind::user_owner(&id)),
    );
    Ok(StatusCode::NO_CONTENT)
}

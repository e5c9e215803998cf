//! Users of the caller's tenant: owners and admins manage them.

use super::vocabulary::RoleName;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ferrule_core::secret::MIN_USER_PASSWORD_LEN;
use ferrule_core::{PrincipalKind, Role};
use ferrule_store::{AuthError, UserChange};
use serde::Deserialize;
use utoipa::ToSchema;

use super::api_keys::disconnect_keys_made_by;
use super::views::UserView;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, ClientIp, JsonBody, bearer};
use crate::observe::AuthFailed;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(
        pattern = "^[^@\\s\\x00-\\x1f\\x7f-\\x9f]+@[^\\s\\x00-\\x1f\\x7f-\\x9f]+$",
        max_length = 254
    )]
    pub email: String,
    /// At least 8 characters.
    #[schema(min_length = 8)]
    pub password: String,
    #[schema(value_type = RoleName)]
    pub role: Role,
}

/// Changes to a user; absent fields stay as they are. The caller needs a
/// role at least the user's current one (and the owner role, unless it is
/// the caller's own password or email).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new role, at most the caller's own. Ends the user's sessions.
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<Role>,
    /// A new password, at least 8 characters. Ends the user's sessions
    /// (when users change their own: all but the one making the change).
    #[schema(min_length = 8)]
    pub password: Option<String>,
    /// A new email, unique across the instance.
    #[schema(
        pattern = "^[^@\\s\\x00-\\x1f\\x7f-\\x9f]+@[^\\s\\x00-\\x1f\\x7f-\\x9f]+$",
        max_length = 254
    )]
    pub email: Option<String>,
    /// The caller's current password: required to change one's own
    /// password or email, refused otherwise.
    pub current_password: Option<String>,
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_USER_PASSWORD_LEN {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {MIN_USER_PASSWORD_LEN} characters"),
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
        return Err(ApiError::Forbidden("admins belong to the default tenant"));
    }
    Ok(())
}

/// Lists the users of the tenant.
#[utoipa::path(get, operation_id = "listUsers", path = "/api/v1/users", tag = "users", params(PageQuery),
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

/// Creates a user in the tenant (owners and admins).
#[utoipa::path(post, operation_id = "createUser", path = "/api/v1/users", tag = "users", request_body = CreateUser,
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

/// Reads one user.
#[utoipa::path(get, operation_id = "getUser", path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
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

/// Change a user's role, password or email.
///
/// Every change needs a caller whose role is at least the user's current
/// one. Changing one's own password or email needs `current_password`. The
/// last admin of the instance and the last owner of a tenant cannot be
/// demoted (409).
#[utoipa::path(patch, operation_id = "updateUser", path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
    request_body = UpdateUser,
    responses((status = 200, body = UserView),
        (status = 400, body = Problem, content_type = "application/problem+json",
            description = "an invalid field, or `current_password` missing or not allowed"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json",
            description = "the user's role is above the caller's, or `current_password` is wrong"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "the email is taken, or the change would leave no admin or owner"),
        (status = 429, body = Problem, content_type = "application/problem+json",
            description = "too many wrong `current_password`s; see Retry-After")))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ClientIp(source): ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let own = caller.user_id() == Some(id.as_str());
    // One's own password and email are one's own business; every other
    // change needs the owner role (and, in the store, a role at least the
    // user's current one).
    if !own || req.role.is_some() {
        caller.require_access_admin()?;
    }
    if let Some(role) = req.role {
        check_grant(&caller, role)?;
    }
    if let Some(p) = &req.password {
        check_password(p)?;
    }
    if let Some(e) = &req.email {
        check_email(e)?;
    }
    let credentials = req.password.is_some() || req.email.is_some();
    match (own && credentials, &req.current_password) {
        // Re-authentication, not a malformed body: 403 as for any missing right.
        (true, None) => {
            return Err(ApiError::Forbidden(
                "changing your own password or email needs your current_password",
            ));
        }
        (true, Some(current)) => check_own_password(&state, &caller, &id, current, source).await?,
        // Only one's own changes need it; it proves nothing about another user.
        (false, _) => {}
    }
    let keep_session = if own { bearer(&headers) } else { None };
    let change = UserChange {
        role: req.role,
        email: req.email.as_deref(),
        password: req.password.as_deref(),
        by: Some(caller.role),
        keep_session,
    };
    let user = state
        .identity
        .update_user(&caller.tenant, &id, change)
        .await?;
    // Like its login sessions, the user's MQTT connections end when its
    // password or role changes; a new role also changes what the keys it
    // created may do.
    if req.password.is_some() || req.role.is_some() {
        state.disconnect_mqtt(&caller.tenant, Some(PrincipalKind::user_owner(&id)));
    }
    if req.role.is_some() {
        disconnect_keys_made_by(&state, &id).await?;
    }
    Ok(Json(user.into()))
}

/// Checks the caller's own current password; a wrong one counts as a failed
/// authentication.
async fn check_own_password(
    state: &AppState,
    caller: &Caller,
    id: &str,
    current: &str,
    source: Option<std::net::IpAddr>,
) -> ApiResult<()> {
    match state
        .identity
        .check_own_password(&caller.tenant, id, current, source)
        .await
    {
        Ok(()) => Ok(()),
        Err(AuthError::Store(e)) => Err(e.into()),
        // Backoff and a full hashing queue answer as they do at login.
        Err(e @ (AuthError::Throttled { .. } | AuthError::Busy)) => Err(e.into()),
        Err(e) => {
            AuthFailed {
                transport: "http",
                reason: e.label(),
            }
            .emit();
            Err(ApiError::Forbidden(
                "current_password is not your current password",
            ))
        }
    }
}

/// Delete a user: its sessions end, and the API keys it created (and the
/// keys those created) are revoked.
#[utoipa::path(delete, operation_id = "deleteUser", path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json",
            description = "the user's role is above the caller's"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "deleting oneself, or the last admin or owner")))]
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
    state
        .store()
        .delete_user(&caller.tenant, &id, Some(caller.role))
        .await?;
    state.disconnect_mqtt(&caller.tenant, Some(PrincipalKind::user_owner(&id)));
    disconnect_keys_made_by(&state, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

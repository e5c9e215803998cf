//! Custom apps: a tenant's own static HTML5 pages, uploaded as a zip bundle
//! (checked by [`super::app_bundle`]), served to the tenant's console users
//! under `/apps/{tenant}/{app}/` (see `console::app_files`), each with an
//! API key of its own that its pages are handed.
//!
//! Editors and above upload, replace and delete; viewers read. The app's
//! key is a viewer by default; `role=editor` gives it write access, for
//! editors and above (never above the creator's own role: the key records
//! its creator, whose rights cap it). Deleting the app revokes its key.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use ferrule_core::{PrincipalKind, Role, TenantId};
use ferrule_store::StoreError;
use ferrule_store::apps::{AppRecord, AppStore};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::app_bundle::{self, Bundle};
use super::views::millis;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// The role an app's key gets.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppKeyRole {
    #[default]
    Viewer,
    Editor,
}

impl From<AppKeyRole> for Role {
    fn from(r: AppKeyRole) -> Role {
        match r {
            AppKeyRole::Viewer => Role::Viewer,
            AppKeyRole::Editor => Role::Editor,
        }
    }
}

/// A new app's id, name and key role.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NewAppQuery {
    /// Letters, digits, `-`, `_`, `.`; made up when absent.
    #[param(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: Option<String>,
    /// Shown in the console; the id when absent.
    #[param(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: Option<String>,
    /// The role of the app's API key: `viewer` (default) or `editor`.
    #[param(inline)]
    pub role: Option<AppKeyRole>,
}

/// A custom app.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub id: String,
    pub name: String,
    /// Where its pages are served (to the tenant's console users).
    pub url: String,
    /// The id of its API key (see `/api/v1/api-keys`).
    pub key_id: String,
    /// How many files its bundle holds, and their size unpacked.
    pub files: u64,
    pub bytes: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Where an app's pages are served.
pub fn app_url(tenant: &TenantId, id: &str) -> String {
    format!("/apps/{}/{id}/", tenant.as_str())
}

pub(crate) fn view(a: AppRecord) -> AppView {
    AppView {
        url: app_url(&a.tenant, &a.id),
        id: a.id,
        name: a.name,
        key_id: a.key_id,
        files: a.files,
        bytes: a.bytes,
        created_at: millis(a.created_at),
        updated_at: millis(a.updated_at),
    }
}

pub(crate) fn store(state: &AppState) -> ApiResult<&dyn AppStore> {
    state
        .apps
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("custom apps are not available".into()))
}

/// Ids that cannot be valid are simply not found.
pub(crate) fn app_id(id: &str) -> ApiResult<&str> {
    ferrule_core::id::validate_slug(id)
        .map(|()| id)
        .map_err(|_| ApiError::NotFound("app"))
}

/// Reads the body (a zip archive) within the bundle limit, and unpacks it.
pub(crate) async fn read_bundle(headers: &HeaderMap, body: Body) -> ApiResult<Bundle> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let zip = [
        "application/zip",
        "application/x-zip-compressed",
        "application/octet-stream",
    ];
    if !zip.iter().any(|z| ct.starts_with(z)) {
        return Err(ApiError::invalid(
            "body",
            "send the bundle as a zip archive with Content-Type: application/zip",
        ));
    }
    let bytes = axum::body::to_bytes(body, app_bundle::MAX_BUNDLE_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(app_bundle::MAX_BUNDLE_BYTES))?;
    // Inflating 50 MiB is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || app_bundle::unpack(&bytes))
        .await
        .map_err(|e| ApiError::Internal(format!("unpacking a bundle: {e}")))?
        .map_err(|why| ApiError::invalid("body", format!("bundle refused: {why}")))
}

/// Creates an app from an unpacked bundle, with its key.
pub(crate) async fn create_app(
    state: &AppState,
    caller: &Caller,
    q: NewAppQuery,
    bundle: Bundle,
) -> ApiResult<AppRecord> {
    caller.require_write()?;
    let store = store(state)?;
    let id = match q.id {
        None => ferrule_core::secret::generate_id("app-"),
        Some(id) if ferrule_core::id::validate_slug(&id).is_ok() => id,
        Some(_) => {
            return Err(ApiError::invalid(
                "id",
                "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
            ));
        }
    };
    let name = q.name.unwrap_or_else(|| id.clone());
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(ApiError::invalid("name", "1 to 128 characters"));
    }
    let role: Role = q.role.unwrap_or_default().into();
    if role > caller.role {
        return Err(ApiError::Forbidden(
            "an app's key cannot have a role above your own",
        ));
    }
    match store.get_app(&caller.tenant, &id).await {
        Ok(_) => return Err(ApiError::Conflict("an app with this id exists".into())),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let created_by = match &caller.principal.kind {
        PrincipalKind::User { id, .. } | PrincipalKind::ApiKey { id, .. } => id.clone(),
        PrincipalKind::Device { .. } | PrincipalKind::Anonymous => {
            return Err(ApiError::Forbidden("only users and API keys create apps"));
        }
    };
    let (key, secret) = state
        .identity
        .create_api_key(
            &caller.tenant,
            &format!("app {id}"),
            role,
            None,
            &created_by,
        )
        .await?;
    let now = ferrule_core::message::now_ms();
    let app = AppRecord {
        tenant: caller.tenant.clone(),
        id,
        name,
        key_id: key.id.clone(),
        key_secret: secret,
        files: bundle.files.len() as u64,
        bytes: bundle.bytes,
        created_at: now,
        updated_at: now,
    };
    if let Err(e) = store.create_app(&app, bundle.files).await {
        // No app, no key: a key nothing uses is only a risk.
        let _ = state
            .store()
            .revoke_api_key(&caller.tenant, &key.id, Timestamp::now())
            .await;
        return Err(match e {
            StoreError::Conflict { .. } => ApiError::Conflict("an app with this id exists".into()),
            e => e.into(),
        });
    }
    Ok(app)
}

/// Replaces an app's bundle; its key stays.
pub(crate) async fn replace_app(
    state: &AppState,
    caller: &Caller,
    id: &str,
    bundle: Bundle,
) -> ApiResult<AppRecord> {
    caller.require_write()?;
    let store = store(state)?;
    let mut app = store.get_app(&caller.tenant, app_id(id)?).await?;
    app.files = bundle.files.len() as u64;
    app.bytes = bundle.bytes;
    app.updated_at = ferrule_core::message::now_ms();
    store.replace_app_files(&app, bundle.files).await?;
    Ok(app)
}

/// Deletes an app, its files, and its key.
pub(crate) async fn delete_app(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    caller.require_write()?;
    let app = store(state)?
        .delete_app(&caller.tenant, app_id(id)?)
        .await?;
    match state
        .store()
        .revoke_api_key(&caller.tenant, &app.key_id, Timestamp::now())
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    state.disconnect_mqtt(
        &caller.tenant,
        Some(PrincipalKind::api_key_owner(&app.key_id)),
    );
    Ok(())
}

/// Lists the tenant's apps by id.
#[utoipa::path(get, operation_id = "listApps", path = "/api/v1/apps", tag = "apps",
    params(PageQuery),
    responses((status = 200, body = Paged<AppView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<AppView>>> {
    let page = store(&state)?
        .list_apps(&caller.tenant, &q.to_request()?)
        .await?;
    Ok(Json(Paged::from_page(page, view)))
}

/// Uploads a new app: its bundle is a zip archive (at most 10 MiB, 50 MiB
/// unpacked, 1,000 entries) with an `index.html` at its root. A refused
/// bundle keeps nothing and the answer says why. The app gets an API key of
/// its own, handed to its pages at `ferrule.json`.
#[utoipa::path(post, operation_id = "createApp", path = "/api/v1/apps", tag = "apps",
    params(NewAppQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The bundle: a zip archive, sent as `application/zip` or `application/octet-stream`"),
    responses((status = 201, body = AppView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "The id is taken"),
        (status = 413, body = Problem), (status = 503, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<NewAppQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<AppView>)> {
    // Role first: a viewer's upload is not even read.
    caller.require_write()?;
    let bundle = read_bundle(&headers, body).await?;
    let app = create_app(&state, &caller, q, bundle).await?;
    Ok((StatusCode::CREATED, Json(view(app))))
}

/// Reads an app.
#[utoipa::path(get, operation_id = "getApp", path = "/api/v1/apps/{id}", tag = "apps",
    params(("id" = String, Path)),
    responses((status = 200, body = AppView), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AppView>> {
    let app = store(&state)?.get_app(&caller.tenant, app_id(&id)?).await?;
    Ok(Json(view(app)))
}

/// Replaces an app's bundle, all files at once; its key and URL stay.
#[utoipa::path(put, operation_id = "replaceApp", path = "/api/v1/apps/{id}", tag = "apps",
    params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The bundle: a zip archive, sent as `application/zip` or `application/octet-stream`"),
    responses((status = 200, body = AppView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 503, body = Problem)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<AppView>> {
    caller.require_write()?;
    store(&state)?.get_app(&caller.tenant, app_id(&id)?).await?;
    let bundle = read_bundle(&headers, body).await?;
    Ok(Json(view(replace_app(&state, &caller, &id, bundle).await?)))
}

/// Deletes an app: its files, and its key, which stops working at once.
#[utoipa::path(delete, operation_id = "deleteApp", path = "/api/v1/apps/{id}", tag = "apps",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    delete_app(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

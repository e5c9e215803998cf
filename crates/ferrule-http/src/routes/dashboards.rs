//! The tenant's dashboards: grids of widgets, saved server-side with a
//! version (`If-Match` on replace), exported and imported as JSON, and
//! shared read-only through a link whose token is shown once and can be
//! revoked (see [`super::shared`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrule_core::secret::{generate_id, hash_token};
use ferrule_store::StoreError;
use ferrule_store::dashboards::{DashboardRecord, DashboardStore};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dashboard_widgets::{self, Widget};
use super::views::{millis, with_etag};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// Where a share token opens the dashboard (public, read only).
pub const SHARED_PATH: &str = "/api/v1/shared/dashboards/";

/// A dashboard's content: with `PUT`, every field is replaced.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardFields {
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// At most 64.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub widgets: Vec<Widget>,
}

/// A new dashboard.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDashboard {
    /// Letters, digits, `-`, `_`, `.`; made up when absent.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(max_items = 64)]
    pub widgets: Vec<Widget>,
}

/// What an export document is; an import refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ExportFormat {
    #[serde(rename = "ferrule.dashboard/1")]
    V1,
}

/// A dashboard as exported: everything but its id, version and link, so
/// that it imports into any tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DashboardExport {
    /// `ferrule.dashboard/1`.
    pub format: ExportFormat,
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    #[serde(default)]
    #[schema(max_items = 64)]
    pub widgets: Vec<Widget>,
}

/// A dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub widgets: Vec<Widget>,
    /// 1 when created; every change adds 1 (also the ETag).
    pub version: u64,
    /// Whether a share link is open.
    pub shared: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub shared_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A new share link: the token is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareLink {
    pub token: String,
    /// Where the token opens the dashboard, without logging in.
    pub path: String,
}

/// The stored widgets, as the API checked them when saved.
pub(crate) fn widgets_of(d: &DashboardRecord) -> Vec<Widget> {
    serde_json::from_value(d.widgets.clone()).unwrap_or_default()
}

fn view(d: DashboardRecord) -> DashboardView {
    DashboardView {
        widgets: widgets_of(&d),
        id: d.id,
        name: d.name,
        description: d.description,
        version: d.version,
        shared: d.shared_at.is_some(),
        shared_at: d.shared_at.map(millis),
        created_at: millis(d.created_at),
        updated_at: millis(d.updated_at),
    }
}

/// The view with its version as the ETag.
fn respond(status: StatusCode, v: DashboardView) -> Response {
    with_etag(status, v.version, v)
}

fn store(state: &AppState) -> ApiResult<&dyn DashboardStore> {
    state
        .dashboards
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("dashboards are not available".into()))
}

/// Ids that cannot be valid are simply not found.
fn dashboard_id(id: &str) -> ApiResult<&str> {
    ferrule_core::id::validate_slug(id)
        .map(|()| id)
        .map_err(|_| ApiError::NotFound("dashboard"))
}

/// The caller's tenant's dashboard with this id.
async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<DashboardRecord> {
    Ok(store(state)?
        .get_dashboard(&caller.tenant, dashboard_id(id)?)
        .await?)
}

fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::Conflict("a dashboard with this id exists".into()),
        e => e.into(),
    }
}

/// Checks the parts of a dashboard and makes its record.
fn record(
    caller: &Caller,
    id: String,
    name: String,
    description: Option<String>,
    widgets: Vec<Widget>,
) -> ApiResult<DashboardRecord> {
    if name.trim().is_empty() || name.chars().count() > 128 {
        return Err(ApiError::invalid("name", "1 to 128 characters"));
    }
    let description = description.unwrap_or_default();
    if description.chars().count() > 1024 {
        return Err(ApiError::invalid("description", "at most 1024 characters"));
    }
    dashboard_widgets::check(&widgets)?;
    let now = ferrule_core::message::now_ms();
    Ok(DashboardRecord {
        tenant: caller.tenant.clone(),
        id,
        name,
        description,
        widgets: serde_json::to_value(&widgets)
            .map_err(|e| ApiError::Internal(format!("encoding widgets: {e}")))?,
        version: 1,
        created_at: now,
        updated_at: now,
        shared_at: None,
    })
}

async fn create_record(state: &AppState, d: DashboardRecord) -> ApiResult<Response> {
    store(state)?
        .create_dashboard(&d)
        .await
        .map_err(not_found)?;
    Ok(respond(StatusCode::CREATED, view(d)))
}

/// Ids that would shadow a fixed path (`/api/v1/dashboards/import`, the
/// console's `/dashboards/import`): such a dashboard could not be opened.
const RESERVED_IDS: [&str; 2] = ["new", "import"];

fn new_id(id: Option<String>) -> ApiResult<String> {
    match id {
        None => Ok(generate_id("d-")),
        Some(id) if RESERVED_IDS.contains(&id.as_str()) => Err(ApiError::invalid(
            "id",
            format!("`{id}` names a page of the API or console; choose another id"),
        )),
        Some(id) if ferrule_core::id::validate_slug(&id).is_ok() => Ok(id),
        Some(_) => Err(ApiError::invalid(
            "id",
            "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )),
    }
}

/// Lists the tenant's dashboards by id.
#[utoipa::path(get, operation_id = "listDashboards", path = "/api/v1/dashboards", tag = "dashboards",
    params(PageQuery),
    responses((status = 200, body = Paged<DashboardView>), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<DashboardView>>> {
    let page = store(&state)?
        .list_dashboards(&caller.tenant, &q.to_request()?)
        .await?;
    Ok(Json(Paged::from_page(page, view)))
}

/// Creates a dashboard.
#[utoipa::path(post, operation_id = "createDashboard", path = "/api/v1/dashboards", tag = "dashboards",
    request_body = NewDashboard,
    responses((status = 201, body = DashboardView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "The id is taken"), (status = 503, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<NewDashboard>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let id = new_id(req.id)?;
    let d = record(&caller, id, req.name, req.description, req.widgets)?;
    create_record(&state, d).await
}

/// Reads a dashboard.
#[utoipa::path(get, operation_id = "getDashboard", path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path)),
    responses((status = 200, body = DashboardView), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = find(&state, &caller, &id).await?;
    Ok(respond(StatusCode::OK, view(d)))
}

/// Replaces a dashboard's name, description and widgets (with `If-Match`,
/// only if its version is still that one); its share link stays.
#[utoipa::path(put, operation_id = "replaceDashboard", path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on, as the ETag gives it, or *",
            pattern = r#"^(\*|(W/)?"?[0-9]{1,19}"?)$"#)),
    request_body = DashboardFields,
    responses((status = 200, body = DashboardView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 412, body = Problem, description = "The dashboard changed since that version"),
        (status = 503, body = Problem)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<DashboardFields>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let expected = super::twin::if_match(&headers)?;
    let store = store(&state)?;
    let current = find(&state, &caller, &id).await?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(ApiError::PreconditionFailed(format!(
            "the dashboard changed meanwhile: its version is now {}",
            current.version
        )));
    }
    let mut d = record(&caller, id, req.name, req.description, req.widgets)?;
    d.version = current.version + 1;
    d.created_at = current.created_at;
    d.shared_at = current.shared_at;
    store
        .update_dashboard(&d, current.version)
        .await
        .map_err(|e| match e {
            // Someone else's change landed between the read and the write.
            StoreError::Conflict { .. } => ApiError::PreconditionFailed(
                "the dashboard changed meanwhile: read it again".into(),
            ),
            e => e.into(),
        })?;
    Ok(respond(StatusCode::OK, view(d)))
}

/// Deletes a dashboard; its share link stops working at once.
#[utoipa::path(delete, operation_id = "deleteDashboard", path = "/api/v1/dashboards/{id}", tag = "dashboards",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    store(&state)?
        .delete_dashboard(&caller.tenant, dashboard_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Opens a read-only share link, replacing any earlier one (which stops
/// working). The token is shown this once; anyone holding it sees this
/// dashboard and the data of its widgets, nothing else.
#[utoipa::path(post, operation_id = "shareDashboard", path = "/api/v1/dashboards/{id}/share", tag = "dashboards",
    params(("id" = String, Path)),
    responses((status = 201, body = ShareLink), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn share(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<ShareLink>)> {
    caller.require_write()?;
    // 256 random bits, like every other token; only its hash is kept.
    let token = ferrule_core::secret::generate_share_token();
    store(&state)?
        .set_dashboard_share(
            &caller.tenant,
            dashboard_id(&id)?,
            Some((&hash_token(&token), ferrule_core::message::now_ms())),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ShareLink {
            path: format!("{SHARED_PATH}{token}"),
            token,
        }),
    ))
}

/// Revokes the share link: the token shows nothing from now on.
#[utoipa::path(delete, operation_id = "unshareDashboard", path = "/api/v1/dashboards/{id}/share", tag = "dashboards",
    params(("id" = String, Path)),
    responses((status = 204, description = "Revoked (or was not shared)"), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn unshare(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    store(&state)?
        .set_dashboard_share(&caller.tenant, dashboard_id(&id)?, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The dashboard as a JSON document that `POST /dashboards/import` takes
/// in any tenant.
#[utoipa::path(get, operation_id = "exportDashboard", path = "/api/v1/dashboards/{id}/export", tag = "dashboards",
    params(("id" = String, Path)),
    responses((status = 200, body = DashboardExport), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let d = find(&state, &caller, &id).await?;
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"dashboard-{}.json\"", d.id)).ok();
    let doc = DashboardExport {
        format: ExportFormat::V1,
        widgets: widgets_of(&d),
        name: d.name,
        description: d.description,
    };
    let mut resp = Json(doc).into_response();
    if let Some(v) = disposition {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Where an import goes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The new dashboard's id; made up when absent.
    #[param(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: Option<String>,
}

/// Creates a dashboard from an export (of this tenant or another, of this
/// server or another); checked like a new one.
#[utoipa::path(post, operation_id = "importDashboard", path = "/api/v1/dashboards/import", tag = "dashboards",
    params(ImportQuery), request_body = DashboardExport,
    responses((status = 201, body = DashboardView), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "The id is taken"), (status = 503, body = Problem)))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImportQuery>,
    JsonBody(doc): JsonBody<DashboardExport>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let id = new_id(q.id)?;
    let d = record(&caller, id, doc.name, Some(doc.description), doc.widgets)?;
    create_record(&state, d).await
}

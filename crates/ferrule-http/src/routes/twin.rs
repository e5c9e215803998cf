//! A device's twin: reported and desired state, the delta, and history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferrule_store::twin::{TwinChange, TwinHistoryQuery, TwinSection};
use ferrule_twin::twin::{DocumentError, TwinError, TwinView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::devices::device_id;
use super::events::numbered_page;
use super::telemetry::parse_range;
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::Paged;
use crate::state::AppState;

/// A device's twin. `metadata` mirrors `reported` and `desired` with, for
/// each value, when it last changed (ms since the Unix epoch).
#[derive(Debug, Serialize, ToSchema)]
pub struct TwinBody {
    pub device: String,
    #[schema(value_type = Object)]
    pub reported: Map<String, Value>,
    #[schema(value_type = Object)]
    pub desired: Map<String, Value>,
    /// Desired keys whose value reported does not have.
    #[schema(value_type = Object)]
    pub delta: Map<String, Value>,
    /// Moves with every change of either side.
    pub version: u64,
    pub reported_version: u64,
    /// The version `If-Match` compares with (also the `ETag`).
    pub desired_version: u64,
    pub metadata: TwinMetadata,
    /// ms since the Unix epoch; absent while the twin is empty.
    pub updated_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TwinMetadata {
    #[schema(value_type = Object)]
    pub reported: Map<String, Value>,
    #[schema(value_type = Object)]
    pub desired: Map<String, Value>,
}

fn body(device: &str, view: TwinView) -> TwinBody {
    let t = view.twin;
    TwinBody {
        device: device.to_owned(),
        reported: t.reported,
        desired: t.desired,
        delta: view.delta,
        version: t.version,
        reported_version: t.reported_version,
        desired_version: t.desired_version,
        metadata: TwinMetadata {
            reported: t.reported_meta,
            desired: t.desired_meta,
        },
        updated_at: (t.version > 0).then_some(t.updated_at),
    }
}

/// The twin with its `ETag` (the desired version).
fn respond(device: &str, view: TwinView) -> Response {
    let etag = format!("\"{}\"", view.twin.desired_version);
    let mut resp = Json(body(device, view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn twin_error(e: TwinError) -> ApiError {
    match e {
        TwinError::VersionMismatch { current } => ApiError::PreconditionFailed(format!(
            "desired state is at version {current}: read it again (GET) and retry with If-Match: \"{current}\""
        )),
        TwinError::Document(e @ DocumentError::TooLarge(_)) => ApiError::TooLarge(e.to_string()),
        TwinError::Document(e) => ApiError::Invalid {
            field: Some("desired".into()),
            detail: e.to_string(),
        },
        TwinError::Busy => ApiError::Busy {
            detail: e.to_string(),
            retry_after: 1,
        },
        TwinError::Store(why) => ApiError::Internal(why),
    }
}

/// Reads a device's twin: reported, desired, delta, versions and update times.
#[utoipa::path(get, operation_id = "getDeviceState", path = "/api/v1/devices/{id}/state", tag = "twin",
    params(("id" = String, Path)),
    responses((status = 200, body = TwinBody, headers(("ETag" = String, description = "The desired version, for If-Match"))),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let view = state
        .devices()?
        .twins
        .get(&caller.tenant, &device)
        .await
        .map_err(twin_error)?;
    Ok(respond(device.as_str(), view))
}

/// Changes desired state with a JSON merge patch (RFC 7386): keys set,
/// `null` deletes, objects merge. The body is `{"desired": PATCH}` (a merge
/// patch of the twin document) or the patch of desired state itself. With
/// `If-Match: "VERSION"` the change is made only if desired state is still
/// at that version (412 otherwise). Ferrule then publishes the full desired
/// state on `devices/{id}/state/desired` and the delta on
/// `devices/{id}/state/delta`, both retained.
#[utoipa::path(patch, operation_id = "patchDeviceState", path = "/api/v1/devices/{id}/state", tag = "twin",
    params(("id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The desired version the change is based on, as the ETag gives it, or *",
            pattern = "^(\\*|(W/)?\"?[0-9]{1,19}\"?)$")),
    request_body(content = Object, description = "{\"desired\": {...}} or the desired patch itself",
        content_type = "application/merge-patch+json"),
    responses((status = 200, body = TwinBody), (status = 400, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 412, body = Problem, description = "Desired state moved on since the version in If-Match"),
        (status = 413, body = Problem, description = "Desired state would outgrow its limit"),
        (status = 503, body = Problem)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Response> {
    caller.require_write()?;
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let if_match = if_match(&headers)?;
    let patch = match patch {
        Value::Object(mut o) if o.len() == 1 && o.get("desired").is_some_and(Value::is_object) => {
            o.remove("desired").expect("checked above")
        }
        other => other,
    };
    let size = patch.to_string().len();
    if size > ferrule_twin::twin::MAX_DOCUMENT_BYTES {
        metrics::counter!("ferrule_twin_refused_total", "reason" => "too_large").increment(1);
        return Err(twin_error(DocumentError::TooLarge(size).into()));
    }
    let view = state
        .devices()?
        .twins
        .patch_desired(
            &caller.tenant,
            &device,
            patch,
            if_match,
            caller.principal.session_owner(),
        )
        .await
        .map_err(|e| {
            if let TwinError::Document(DocumentError::NotAnObject | DocumentError::TooDeep) = e {
                metrics::counter!("ferrule_twin_refused_total", "reason" => "shape").increment(1);
            }
            twin_error(e)
        })?;
    Ok(respond(device.as_str(), view))
}

/// `If-Match: "3"` (or `W/"3"`, or `3`); `*` matches any version.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            ApiError::invalid(
                "If-Match",
                "must be the version as the ETag gives it, e.g. \"3\"",
            )
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// ms since the Unix epoch or RFC 3339 (inclusive).
    #[param(schema_with = super::vocabulary::time_param)]
    pub from: Option<String>,
    /// ms since the Unix epoch or RFC 3339 (exclusive).
    #[param(schema_with = super::vocabulary::time_param)]
    pub to: Option<String>,
    /// Only changes of this side.
    #[param(inline)]
    pub section: Option<SectionParam>,
    /// Changes per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SectionParam {
    Reported,
    Desired,
}

/// One change of a twin.
#[derive(Debug, Serialize, ToSchema)]
pub struct TwinChangeView {
    /// The twin's version after the change.
    pub version: u64,
    /// ms since the Unix epoch.
    pub ts: i64,
    /// `reported` or `desired`.
    pub section: String,
    /// Who made it: `device:ID`, `user:ID` or `key:ID`.
    pub actor: String,
    /// The merge patch as applied.
    #[schema(value_type = Object)]
    pub patch: Value,
}

fn change_view(c: TwinChange) -> TwinChangeView {
    TwinChangeView {
        version: c.version,
        ts: c.ts,
        section: c.section.as_str().to_owned(),
        actor: c.actor,
        patch: c.patch,
    }
}

/// Lists a twin's changes, oldest first: who changed what, when.
#[utoipa::path(get, operation_id = "getDeviceStateHistory", path = "/api/v1/devices/{id}/state/history", tag = "twin",
    params(("id" = String, Path), HistoryQuery),
    responses((status = 200, body = Paged<TwinChangeView>), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Paged<TwinChangeView>>> {
    let device = device_id(&id)?;
    state.store().get_device(&caller.tenant, &device).await?;
    let range = parse_range(q.from.as_deref(), q.to.as_deref())?;
    let (limit, after) = numbered_page::<u64>(q.limit, q.cursor.as_deref())?;
    let page = state
        .devices()?
        .twins
        .history(TwinHistoryQuery {
            tenant: caller.tenant.clone(),
            device,
            from: range.from,
            to: range.to,
            section: q.section.map(|s| match s {
                SectionParam::Reported => TwinSection::Reported,
                SectionParam::Desired => TwinSection::Desired,
            }),
            after,
            limit,
        })
        .await?;
    Ok(Json(Paged {
        items: page.items.into_iter().map(change_view).collect(),
        next_cursor: page.next,
    }))
}

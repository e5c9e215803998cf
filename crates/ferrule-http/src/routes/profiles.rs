//! Device profiles of the caller's tenant: what its kinds of device send
//! (JSON Schemas checked on the router's intake), how long their telemetry
//! is kept, and defaults for rules and dashboards.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrule_store::DeviceProfile;
use ferrule_twin::profiles::{ProfileError, Profiles};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// Longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 1024;
/// Most days a profile may keep telemetry (100 years, as tenant settings).
const MAX_DAYS: u32 = 36500;

/// A new device profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProfile {
    /// Letters, digits, `-`, `_`, `.`; at most 64; unique in the tenant.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// As in [`ProfileFields`].
    #[schema(value_type = Option<Object>)]
    pub telemetry_schema: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub state_schema: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<serde_json::Value>,
}

impl CreateProfile {
    fn split(self) -> (String, ProfileFields) {
        let fields = ProfileFields {
            description: self.description,
            telemetry_schema: self.telemetry_schema,
            state_schema: self.state_schema,
            retention_days: self.retention_days,
            defaults: self.defaults,
        };
        (self.name, fields)
    }
}

/// What a profile holds besides its name. With `PUT`, a field left out is
/// cleared.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileFields {
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// JSON Schema of one telemetry record: the key → value object of
    /// `{"temp": 21}`, or the `values` of `{"ts", "values"}`; each element
    /// of an array payload is one record. At most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub telemetry_schema: Option<serde_json::Value>,
    /// JSON Schema of a `state/reported` object as the device sends it
    /// (allow `null` for keys a device may delete). At most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub state_schema: Option<serde_json::Value>,
    /// Days the telemetry of the profile's devices is kept; null follows
    /// the tenant's retention.
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
    /// A free JSON object (at most 16 KiB) that rules and dashboards read.
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<serde_json::Value>,
}

/// A device profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub name: String,
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub telemetry_schema: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub state_schema: Option<serde_json::Value>,
    pub retention_days: Option<u32>,
    #[schema(value_type = Object)]
    pub defaults: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl From<DeviceProfile> for ProfileView {
    fn from(p: DeviceProfile) -> Self {
        Self {
            name: p.name,
            description: p.description,
            telemetry_schema: p.telemetry_schema,
            state_schema: p.state_schema,
            retention_days: p.retention_days,
            defaults: p.defaults,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<ProfileError> for ApiError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Invalid { field, why } => ApiError::invalid(field, why),
            ProfileError::TooLarge { field, limit } => ApiError::FieldTooLarge {
                field: field.into(),
                limit,
            },
            ProfileError::Store(e) => e.into(),
            e @ ProfileError::Unavailable => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Path names that cannot be valid are simply not found.
fn profile_name(name: &str) -> Result<&str, ApiError> {
    ferrule_core::id::validate_slug(name)
        .map(|()| name)
        .map_err(|_| ApiError::NotFound("device profile"))
}

fn profiles(state: &AppState) -> ApiResult<&Profiles> {
    Ok(&state.devices()?.profiles)
}

/// The profile to save from a request, checked field by field; the
/// schemas are compiled by [`Profiles`].
fn to_profile(
    caller: &Caller,
    name: String,
    f: ProfileFields,
    created_at: Timestamp,
) -> ApiResult<DeviceProfile> {
    let description = f.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if let Some(d) = f.retention_days
        && !(1..=MAX_DAYS).contains(&d)
    {
        return Err(ApiError::invalid(
            "retention_days",
            format!("must be between 1 and {MAX_DAYS} days"),
        ));
    }
    Ok(DeviceProfile {
        tenant: caller.tenant.clone(),
        name,
        description,
        telemetry_schema: f.telemetry_schema,
        state_schema: f.state_schema,
        retention_days: f.retention_days,
        defaults: f.defaults.unwrap_or_else(|| serde_json::json!({})),
        created_at,
        updated_at: Timestamp::now(),
    })
}

/// Lists the tenant's device profiles by name, `default` included.
#[utoipa::path(get, operation_id = "listDeviceProfiles", path = "/api/v1/device-profiles", tag = "devices", params(PageQuery),
    responses((status = 200, body = Paged<ProfileView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<ProfileView>>> {
    let page = profiles(&state)?
        .store()?
        .list_profiles(&caller.tenant, &q.to_request()?)
        .await?;
    Ok(Json(Paged::from_page(page, ProfileView::from)))
}

/// Creates a device profile. Its schemas are compiled now: one that does
/// not compile is a 400 that says why.
#[utoipa::path(post, operation_id = "createDeviceProfile", path = "/api/v1/device-profiles", tag = "devices",
    request_body = CreateProfile,
    responses((status = 201, body = ProfileView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem, description = "The name is taken"),
        (status = 413, body = Problem, description = "A schema over 64 KiB or defaults over 16 KiB"),
        (status = 503, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateProfile>,
) -> ApiResult<(StatusCode, Json<ProfileView>)> {
    caller.require_write()?;
    ferrule_core::id::validate_slug(&req.name)
        .map_err(|e| ApiError::invalid("name", e.to_string()))?;
    // `/profiles/new` is the console's form: such a profile could not be
    // opened there.
    if req.name == "new" {
        return Err(ApiError::invalid(
            "name",
            "`new` names a page of the console; choose another name",
        ));
    }
    let (name, fields) = req.split();
    let profile = to_profile(&caller, name, fields, Timestamp::now())?;
    let saved = profiles(&state)?.create(&profile).await?;
    Ok((StatusCode::CREATED, Json(saved.into())))
}

/// Reads a device profile (`default` always exists).
#[utoipa::path(get, operation_id = "getDeviceProfile", path = "/api/v1/device-profiles/{name}", tag = "devices",
    params(("name" = String, Path)),
    responses((status = 200, body = ProfileView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 503, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let profile = profiles(&state)?
        .store()?
        .get_profile(&caller.tenant, profile_name(&name)?)
        .await?;
    Ok(Json(profile.into()))
}

/// Replaces a device profile: fields left out are cleared. The new
/// schemas apply to the next message of its devices.
#[utoipa::path(put, operation_id = "replaceDeviceProfile", path = "/api/v1/device-profiles/{name}", tag = "devices",
    params(("name" = String, Path)), request_body = ProfileFields,
    responses((status = 200, body = ProfileView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem, description = "A schema over 64 KiB or defaults over 16 KiB"),
        (status = 503, body = Problem)))]
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ProfileFields>,
) -> ApiResult<Json<ProfileView>> {
    caller.require_write()?;
    let name = profile_name(&name)?.to_owned();
    // `created_at` is kept by the store.
    let profile = to_profile(&caller, name, req, Timestamp::now())?;
    let saved = profiles(&state)?.replace(&profile).await?;
    Ok(Json(saved.into()))
}

/// Deletes a device profile no device uses. Deleting `default` resets it
/// to empty (it always exists).
#[utoipa::path(delete, operation_id = "deleteDeviceProfile", path = "/api/v1/device-profiles/{name}", tag = "devices",
    params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Devices use the profile"),
        (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    profiles(&state)?
        .delete(&caller.tenant, profile_name(&name)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

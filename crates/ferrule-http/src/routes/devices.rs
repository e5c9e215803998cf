//! Devices of the caller's tenant.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferrule_core::DeviceId;
use ferrule_store::{Device, DeviceUpdate, NewDevice};
use serde::Deserialize;
use utoipa::ToSchema;

use super::device_attributes::{self, DeviceFilterQuery};
use super::device_filter::{self, OnlineFilter};
use super::views::{CreatedDevice, DeviceView};
use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiQuery, JsonBody};
use crate::lifecycle;
use crate::pagination::{PageQuery, Paged};
use crate::state::AppState;

/// Longest device name or profile accepted.
const MAX_TEXT: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    /// Letters, digits, `-`, `_`, `.`; at most 64; unique in the tenant.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length = 1,
        max_length = 64
    )]
    pub id: String,
    /// Display name; defaults to the id.
    #[schema(pattern = "\\S", min_length = 1, max_length = 256)]
    pub name: Option<String>,
    /// Device profile; defaults to `default`.
    #[schema(pattern = "\\S", min_length = 1, max_length = 256)]
    pub profile: Option<String>,
    /// A JSON object of attributes.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    #[schema(pattern = "\\S", min_length = 1, max_length = 256)]
    pub name: Option<String>,
    #[schema(pattern = "\\S", min_length = 1, max_length = 256)]
    pub profile: Option<String>,
    /// Replaces all attributes.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
    /// A disabled device cannot connect or ingest.
    pub enabled: Option<bool>,
}

/// Path ids that cannot be valid are simply not found.
pub(super) fn device_id(id: &str) -> Result<DeviceId, ApiError> {
    DeviceId::new(id).map_err(|_| ApiError::NotFound("device"))
}

fn check_text(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ApiError::invalid(field, "must not be empty")),
        Some(s) if s.chars().count() > MAX_TEXT => Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        )),
        _ => Ok(()),
    }
}

fn check_attributes(v: &Option<serde_json::Value>) -> Result<(), ApiError> {
    match v {
        Some(a) => device_attributes::check(a),
        None => Ok(()),
    }
}

/// The device's view with its connectivity.
pub(crate) fn view(state: &AppState, d: Device) -> DeviceView {
    let connectivity = state
        .devices
        .as_ref()
        .and_then(|s| s.connectivity.state(&d.tenant, &d.id));
    DeviceView::from(d).with_connectivity(connectivity)
}

/// A device may only be put in a profile the tenant has.
async fn check_profile(
    state: &AppState,
    tenant: &ferrule_core::TenantId,
    profile: &Option<String>,
) -> Result<(), ApiError> {
    let (Some(name), Some(services)) = (profile, &state.devices) else {
        return Ok(());
    };
    if services.profiles.exists(tenant, name).await? {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "profile",
            format!("no device profile {name} in this tenant: create it first"),
        ))
    }
}

/// Tells the profile guard which profile a device is in now.
fn device_in_profile(state: &AppState, device: &ferrule_store::Device) {
    if let Some(services) = &state.devices {
        services
            .profiles
            .device_in(&device.tenant, &device.id, &device.profile);
    }
}

/// Lists the tenant's devices, optionally only those with given labels,
/// in a profile, or online (or offline) now; pages over the devices kept.
#[utoipa::path(get, operation_id = "listDevices", path = "/api/v1/devices", tag = "devices", params(PageQuery, OnlineFilter, DeviceFilterQuery),
    responses((status = 200, body = Paged<DeviceView>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
    ApiQuery(online): ApiQuery<OnlineFilter>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Paged<DeviceView>>> {
    let filter = device_attributes::filter(raw.as_deref())?;
    let request = q.to_request()?;
    let page = match online.online {
        None if filter.is_empty() => state.store().list_devices(&caller.tenant, &request).await?,
        None => {
            state
                .devices()?
                .profiles
                .store()?
                .list_devices_matching(&caller.tenant, &filter, &request)
                .await?
        }
        // Online is known in memory only: the other filters are judged
        // there too, over the pages read.
        Some(online) => {
            let connectivity = state.devices.as_ref().map(|s| s.connectivity.clone());
            device_filter::filtered_page(state.store(), &caller.tenant, request, |d| {
                filter.matches(d)
                    && connectivity
                        .as_ref()
                        .is_some_and(|c| c.is_online(&d.tenant, &d.id))
                        == online
            })
            .await?
        }
    };
    Ok(Json(Paged::from_page(page, |d| view(&state, d))))
}

/// Register a device; the response carries its first access token, once.
#[utoipa::path(post, operation_id = "createDevice", path = "/api/v1/devices", tag = "devices", request_body = CreateDevice,
    responses((status = 201, body = CreatedDevice), (status = 400, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem, description = "Attributes over 16 KiB")))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateDevice>,
) -> ApiResult<(StatusCode, Json<CreatedDevice>)> {
    caller.require_write()?;
    let id = DeviceId::new(&req.id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
    check_text("name", &req.name)?;
    check_text("profile", &req.profile)?;
    check_attributes(&req.attributes)?;
    check_profile(&state, &caller.tenant, &req.profile).await?;
    let new = NewDevice {
        tenant: caller.tenant.clone(),
        name: req.name.unwrap_or_else(|| req.id.clone()),
        id,
        profile: req.profile.unwrap_or_else(|| "default".into()),
        attributes: req.attributes.unwrap_or_else(|| serde_json::json!({})),
    };
    let device = lifecycle::create_device(&state, &new).await?;
    let (cred, token) = state
        .identity
        .issue_device_token(&caller.tenant, &device.id, None)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedDevice {
            device: device.into(),
            token,
            credential_id: cred.id,
        }),
    ))
}

/// Reads one device.
#[utoipa::path(get, operation_id = "getDevice", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceView>> {
    let device = state
        .store()
        .get_device(&caller.tenant, &device_id(&id)?)
        .await?;
    Ok(Json(view(&state, device)))
}

/// Changes a device's name, profile, attributes or enabled flag.
#[utoipa::path(patch, operation_id = "updateDevice", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    request_body = UpdateDevice,
    responses((status = 200, body = DeviceView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem, description = "Attributes over 16 KiB")))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<UpdateDevice>,
) -> ApiResult<Json<DeviceView>> {
    caller.require_write()?;
    check_text("name", &req.name)?;
    check_text("profile", &req.profile)?;
    check_attributes(&req.attributes)?;
    check_profile(&state, &caller.tenant, &req.profile).await?;
    let disabling = req.enabled == Some(false);
    let update = DeviceUpdate {
        name: req.name,
        profile: req.profile,
        attributes: req.attributes,
        enabled: req.enabled,
    };
    let device = device_id(&id)?;
    let updated = state
        .store()
        .update_device(&caller.tenant, &device, &update)
        .await?;
    device_in_profile(&state, &updated);
    rules_reread(&state, &updated);
    if disabling {
        state.disconnect_mqtt(
            &caller.tenant,
            Some(ferrule_core::PrincipalKind::device_owner(&device)),
        );
    }
    Ok(Json(view(&state, updated)))
}

/// Delete a device and everything it owns: credentials, MQTT connections
/// and sessions, retained messages under `devices/{id}/`, telemetry and
/// events. A device created again under this id starts empty.
#[utoipa::path(delete, operation_id = "deleteDevice", path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted; stored telemetry is removed from disk in the background"),
        (status = 404, body = Problem),
        (status = 503, body = Problem, description = "Not finished in time; repeat the request")))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    lifecycle::delete_device(&state, &caller.tenant, &device_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes some attributes: the body is a JSON merge patch (RFC 7386) of
/// the attributes, where `null` deletes a key.
#[utoipa::path(patch, operation_id = "patchDeviceAttributes", path = "/api/v1/devices/{id}/attributes", tag = "devices",
    params(("id" = String, Path)),
    request_body(content = Object, description = "A JSON merge patch of the attributes", content_type = "application/merge-patch+json"),
    responses((status = 200, body = DeviceView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem, description = "Attributes over 16 KiB")))]
pub async fn patch_attributes(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> ApiResult<Json<DeviceView>> {
    caller.require_write()?;
    if !patch.is_object() {
        return Err(ApiError::Invalid {
            field: None,
            detail: "a merge patch of attributes must be a JSON object".into(),
        });
    }
    let device = device_id(&id)?;
    let current = state.store().get_device(&caller.tenant, &device).await?;
    let mut attributes = current.attributes;
    device_attributes::merge_patch(&mut attributes, &patch);
    device_attributes::check(&attributes)?;
    let update = DeviceUpdate {
        attributes: Some(attributes),
        ..Default::default()
    };
    let updated = state
        .store()
        .update_device(&caller.tenant, &device, &update)
        .await?;
    rules_reread(&state, &updated);
    Ok(Json(updated.into()))
}

/// Rules that read a device's attributes see the change from now on.
fn rules_reread(state: &AppState, device: &ferrule_store::Device) {
    if let Some(rules) = &state.rules {
        rules.engine.forget_device(&device.tenant, &device.id);
    }
}

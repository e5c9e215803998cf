//! A tenant's telemetry retention and disk budget.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ferrule_store::telemetry::{Deleted, RetentionSettings, retention};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Longest retention accepted: 100 years.
const MAX_DAYS: u32 = 36_500;

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Days kept for devices whose profile has no override; null falls back
    /// to `server_retention_days`.
    pub retention_days: Option<u32>,
    /// Days kept per device profile.
    pub profiles: BTreeMap<String, u32>,
    /// Bytes the tenant may keep; null is no limit. Ingest is refused (MQTT
    /// 0x97, HTTP 507) once reached; `ferrule_telemetry_tenant_budget_warning`
    /// turns 1 at 80 %.
    pub disk_budget_bytes: Option<u64>,
    /// Bytes the tenant's telemetry and events take now.
    pub disk_bytes: u64,
    /// The server's default (`telemetry.retention_days`); null keeps forever.
    pub server_retention_days: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub profiles: BTreeMap<String, u32>,
    pub disk_budget_bytes: Option<u64>,
}

fn days(field: &str, d: u32) -> Result<u32, ApiError> {
    if (1..=MAX_DAYS).contains(&d) {
        Ok(d)
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be between 1 and {MAX_DAYS} days"),
        ))
    }
}

async fn view(state: &AppState, caller: &Caller) -> ApiResult<SettingsView> {
    let t = state.telemetry()?;
    let s = t.store.retention(&caller.tenant).await?;
    Ok(SettingsView {
        retention_days: s.default_days,
        profiles: s.profiles,
        disk_budget_bytes: s.disk_budget_bytes,
        disk_bytes: t.store.disk_bytes(&caller.tenant),
        server_retention_days: t.retention_default,
    })
}

/// Reads the tenant's retention and disk budget.
#[utoipa::path(get, operation_id = "getTelemetrySettings", path = "/api/v1/telemetry/settings", tag = "telemetry",
    responses((status = 200, body = SettingsView), (status = 401, body = Problem)))]
pub async fn get(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<SettingsView>> {
    Ok(Json(view(&state, &caller).await?))
}

/// Replaces the tenant's retention and disk budget.
#[utoipa::path(put, operation_id = "replaceTelemetrySettings", path = "/api/v1/telemetry/settings", tag = "telemetry",
    request_body = UpdateSettings,
    responses((status = 200, body = SettingsView), (status = 400, body = Problem),
        (status = 403, body = Problem)))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<UpdateSettings>,
) -> ApiResult<Json<SettingsView>> {
    caller.require_owner("changing retention needs the owner role")?;
    let t = state.telemetry()?;
    let mut profiles = BTreeMap::new();
    for (profile, d) in body.profiles {
        if profile.is_empty() || profile.len() > 256 {
            return Err(ApiError::invalid(
                "profiles",
                "profile names are 1 to 256 bytes",
            ));
        }
        let d = days(&format!("profiles.{profile}"), d)?;
        profiles.insert(profile, d);
    }
    let settings = RetentionSettings {
        default_days: body
            .retention_days
            .map(|d| days("retention_days", d))
            .transpose()?,
        profiles,
        disk_budget_bytes: body.disk_budget_bytes,
    };
    t.store.set_retention(&caller.tenant, settings).await?;
    Ok(Json(view(&state, &caller).await?))
}

/// Applies retention now instead of at the next interval.
#[utoipa::path(post, operation_id = "runRetention", path = "/api/v1/telemetry/retention/run", tag = "telemetry",
    responses((status = 200, description = "What was deleted", body = Object),
        (status = 403, body = Problem)))]
pub async fn run(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Deleted>> {
    caller.require_owner("running retention needs the owner role")?;
    let t = state.telemetry()?;
    let deleted = retention::apply(
        &**state.store(),
        &*t.store,
        &caller.tenant,
        ferrule_core::message::now_ms(),
        t.retention_default,
    )
    .await
    .map_err(ApiError::Internal)?;
    Ok(Json(deleted))
}

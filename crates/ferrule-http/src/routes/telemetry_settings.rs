//! A tenant's telemetry retention and disk budget.
//!
//! `PUT` replaces the settings, `PATCH` merges a JSON merge patch (RFC
//! 7396: a field left out is kept, `null` clears it). The disk budget has
//! two parts: the ceiling a server admin sets, which the tenant's owner
//! cannot lift, and the owner's own budget, at most the ceiling; the lower
//! one is in force.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use ferrule_store::telemetry::{Deleted, RetentionSettings, retention};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{JsonBody, parse_json};
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
    /// The limit a server admin set for the tenant; the owner may set a
    /// lower `disk_budget_bytes` but cannot lift this. Null is no ceiling.
    pub disk_budget_ceiling_bytes: Option<u64>,
    /// Bytes the tenant's telemetry and events take now, recent telemetry
    /// not yet sealed into chunks included.
    pub disk_bytes: u64,
    /// The server's default (`telemetry.retention_days`); null keeps forever.
    pub server_retention_days: Option<u32>,
}

/// A JSON merge patch of the settings (for the API document; the handler
/// merges the JSON itself): every field may be `null`, which clears it, and
/// so may each profile, which removes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SettingsPatch {
    #[schema(minimum = 1, maximum = 36500)]
    retention_days: Option<u32>,
    #[schema(schema_with = super::vocabulary::profiles_patch)]
    profiles: Option<BTreeMap<String, Option<u32>>>,
    #[schema(maximum = 9223372036854775807_u64)]
    disk_budget_bytes: Option<u64>,
    #[schema(maximum = 9223372036854775807_u64)]
    disk_budget_ceiling_bytes: Option<u64>,
}

/// The largest budget or ceiling (stored as a signed 64-bit integer).
const MAX_BUDGET: u64 = i64::MAX as u64;

/// New settings. With `PUT` a field left out is cleared, except
/// `disk_budget_ceiling_bytes`, which is kept unless given; with `PATCH` a
/// field left out is kept and `null` clears it (in `profiles` too).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    #[schema(minimum = 1, maximum = 36500)]
    pub retention_days: Option<u32>,
    #[serde(default, deserialize_with = "crate::extract::whole::map")]
    #[schema(schema_with = super::vocabulary::profiles_put)]
    pub profiles: BTreeMap<String, u32>,
    /// The owner's budget; at most the ceiling (409 above it).
    #[serde(default, deserialize_with = "crate::extract::whole::option")]
    #[schema(maximum = 9223372036854775807_u64)]
    pub disk_budget_bytes: Option<u64>,
    /// Only a server admin may change it (`X-Tenant` names the tenant).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, maximum = 9223372036854775807_u64)]
    pub disk_budget_ceiling_bytes: Option<Option<u64>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    crate::extract::whole::option(d).map(Some)
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
        disk_budget_ceiling_bytes: s.disk_budget_ceiling_bytes,
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
        (status = 403, body = Problem),
        (status = 409, body = Problem, description = "`disk_budget_bytes` above the ceiling an admin set")))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<UpdateSettings>,
) -> ApiResult<Json<SettingsView>> {
    caller.require_owner("changing retention needs the owner role")?;
    let t = state.telemetry()?;
    let current = t.store.retention(&caller.tenant).await?;
    let settings = validate(&caller, &current, body)?;
    t.store.set_retention(&caller.tenant, settings).await?;
    Ok(Json(view(&state, &caller).await?))
}

/// Changes only the named settings of the tenant (JSON merge patch).
#[utoipa::path(patch, operation_id = "patchTelemetrySettings", path = "/api/v1/telemetry/settings", tag = "telemetry",
    request_body(content = SettingsPatch, content_type = "application/merge-patch+json",
        description = "A JSON merge patch (RFC 7396) of the settings: fields left out are kept, \
            null clears a field (or a profile in `profiles`). `application/json` is accepted too."),
    responses((status = 200, body = SettingsView), (status = 400, body = Problem),
        (status = 403, body = Problem),
        (status = 409, body = Problem, description = "`disk_budget_bytes` above the ceiling an admin set")))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> ApiResult<Json<SettingsView>> {
    caller.require_owner("changing retention needs the owner role")?;
    if !patch.is_object() {
        return Err(ApiError::Invalid {
            field: None,
            detail: "a merge patch of the settings must be a JSON object".into(),
        });
    }
    // Checked before merging: `null` for a field nobody has would vanish
    // in the merge and pass unnoticed.
    if let Some(unknown) = patch
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| !SETTINGS_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            unknown,
            format!(
                "unknown field; the settings are {}",
                SETTINGS_FIELDS.join(", ")
            ),
        ));
    }
    let t = state.telemetry()?;
    let current = t.store.retention(&caller.tenant).await?;
    let mut doc = serde_json::json!({
        "retention_days": current.default_days,
        "profiles": current.profiles,
        "disk_budget_bytes": current.disk_budget_bytes,
        "disk_budget_ceiling_bytes": current.disk_budget_ceiling_bytes,
    });
    merge_patch(&mut doc, patch);
    // A ceiling the patch removed is cleared, not kept (as an absent one
    // would be): say so explicitly.
    if let Some(doc) = doc.as_object_mut() {
        doc.entry("disk_budget_ceiling_bytes")
            .or_insert(serde_json::Value::Null);
    }
    let body: UpdateSettings = parse_json(
        &serde_json::to_vec(&doc)
            .map_err(|e| ApiError::Internal(format!("re-encoding merged settings: {e}")))?,
    )?;
    let settings = validate(&caller, &current, body)?;
    t.store.set_retention(&caller.tenant, settings).await?;
    Ok(Json(view(&state, &caller).await?))
}

/// The fields a settings patch may name.
const SETTINGS_FIELDS: [&str; 4] = [
    "retention_days",
    "profiles",
    "disk_budget_bytes",
    "disk_budget_ceiling_bytes",
];

/// RFC 7396: objects merge member by member, `null` removes a member, and
/// anything else replaces the target.
fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    let serde_json::Value::Object(target) = target else {
        return;
    };
    for (k, v) in patch {
        if v.is_null() {
            target.remove(&k);
        } else {
            merge_patch(target.entry(k).or_insert(serde_json::Value::Null), v);
        }
    }
}

/// Checks new settings against the caller's rights and the ceiling.
fn validate(
    caller: &Caller,
    current: &RetentionSettings,
    body: UpdateSettings,
) -> Result<RetentionSettings, ApiError> {
    let mut profiles = BTreeMap::new();
    for (profile, d) in body.profiles {
        if profile.is_empty() || profile.chars().count() > 256 {
            return Err(ApiError::invalid(
                "profiles",
                "profile names are 1 to 256 characters",
            ));
        }
        let d = days(&format!("profiles.{profile}"), d)?;
        profiles.insert(profile, d);
    }
    let ceiling = match body.disk_budget_ceiling_bytes {
        Some(c) if c != current.disk_budget_ceiling_bytes => {
            if !caller.role.is_admin() {
                return Err(ApiError::Forbidden(
                    "only a server admin may set disk_budget_ceiling_bytes; \
                     an owner may set a lower disk_budget_bytes",
                ));
            }
            c
        }
        _ => current.disk_budget_ceiling_bytes,
    };
    for (field, bytes) in [
        ("disk_budget_bytes", body.disk_budget_bytes),
        ("disk_budget_ceiling_bytes", ceiling),
    ] {
        if bytes.is_some_and(|b| b > MAX_BUDGET) {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_BUDGET}"),
            ));
        }
    }
    // A conflict with the tenant's state (the ceiling it has now), not a
    // malformed request: the same body is fine under another ceiling.
    if let (Some(own), Some(ceiling)) = (body.disk_budget_bytes, ceiling)
        && own > ceiling
    {
        return Err(ApiError::Conflict(format!(
            "disk_budget_bytes {own} is above the ceiling of {ceiling} bytes a server admin \
             set for this tenant; the budget may only be lower"
        )));
    }
    Ok(RetentionSettings {
        default_days: body
            .retention_days
            .map(|d| days("retention_days", d))
            .transpose()?,
        profiles,
        disk_budget_bytes: body.disk_budget_bytes,
        disk_budget_ceiling_bytes: ceiling,
    })
}

/// Applies retention now instead of at the next interval.
#[utoipa::path(post, operation_id = "runRetention", path = "/api/v1/telemetry/retention/run", tag = "telemetry",
    responses((status = 200, description = "What was deleted", body = Object),
        (status = 403, body = Problem)))]
pub async fn run(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Deleted>> {
    caller.require_owner("running retention needs the owner role")?;
    let t = state.telemetry()?;
    let profiles = state.devices.as_ref().and_then(|d| d.profiles.store().ok());
    let deleted = retention::apply(
        &**state.store(),
        profiles.map(|p| &**p),
        &*t.store,
        &caller.tenant,
        ferrule_core::message::now_ms(),
        t.retention_default,
    )
    .await
    .map_err(ApiError::Internal)?;
    Ok(Json(deleted))
}

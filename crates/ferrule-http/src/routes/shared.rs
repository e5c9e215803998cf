//! A shared dashboard, opened by its token without logging in: the
//! dashboard and the data of its widgets — the latest values of the keys
//! they name, a chart's history, a list's open alarms — and nothing else
//! of the tenant. A revoked or replaced token, or a deleted dashboard,
//! shows nothing (404, as for a token that never was).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use ferrule_core::secret::hash_token;
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::alarms::{AlarmFilter, AlarmState};
use ferrule_store::telemetry::{Agg, Range, SeriesQuery};
use serde::Serialize;
use utoipa::ToSchema;

use super::dashboard_widgets::{Widget, WidgetKind};
use super::dashboards::widgets_of;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// Points a chart's history holds at most per key: buckets are chosen to fit.
const HISTORY_POINTS: i64 = 500;
/// Open alarms a list shows at most, per state.
const ALARMS_SHOWN: u32 = 50;
/// Keys a map reads when its widget names none.
const MAP_KEYS: [&str; 2] = ["lat", "lon"];

/// One value at a time.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedPoint {
    pub ts: i64,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// An open alarm, as a list widget shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedAlarm {
    pub device: Option<String>,
    #[serde(rename = "type")]
    pub alarm_type: String,
    pub severity: String,
    pub state: String,
    pub count: u64,
    pub last_seen: i64,
}

/// What one widget shows.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct WidgetData {
    /// The newest value of each of its keys that has one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub latest: BTreeMap<String, SharedPoint>,
    /// A chart's history per key (averages over buckets, at most 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<BTreeMap<String, Vec<SharedPoint>>>,
    /// A list's open alarms, most recently seen first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarms: Option<Vec<SharedAlarm>>,
}

/// A shared dashboard and its widgets' data.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedDashboard {
    pub name: String,
    pub description: String,
    pub widgets: Vec<Widget>,
    /// By widget id.
    pub data: BTreeMap<String, WidgetData>,
}

/// Opens a shared dashboard (no credentials: the token is the grant).
#[utoipa::path(get, operation_id = "openSharedDashboard", path = "/api/v1/shared/dashboards/{token}",
    tag = "dashboards", security(()),
    params(("token" = String, Path, description = "The token `POST /dashboards/{id}/share` gave")),
    responses((status = 200, body = SharedDashboard),
        (status = 404, body = Problem, description = "No such link: never made, revoked, replaced, or its dashboard deleted"),
        (status = 503, body = Problem)))]
pub async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<SharedDashboard>> {
    let store = state
        .dashboards
        .as_deref()
        .ok_or_else(|| ApiError::Unavailable("dashboards are not available".into()))?;
    if !token.starts_with(ferrule_core::secret::SHARE_TOKEN_PREFIX) || token.len() > 128 {
        return Err(ApiError::NotFound("shared dashboard"));
    }
    let d = store
        .shared_dashboard(&hash_token(&token))
        .await
        .map_err(|e| match e {
            ferrule_store::StoreError::NotFound { .. } => ApiError::NotFound("shared dashboard"),
            e => e.into(),
        })?;
    let widgets = widgets_of(&d);
    let mut data = BTreeMap::new();
    for w in &widgets {
        data.insert(w.id.clone(), widget_data(&state, &d.tenant, w).await?);
    }
    Ok(Json(SharedDashboard {
        name: d.name,
        description: d.description,
        widgets,
        data,
    }))
}

pub(crate) async fn widget_data(
    state: &AppState,
    tenant: &TenantId,
    w: &Widget,
) -> ApiResult<WidgetData> {
    let mut data = WidgetData::default();
    if w.kind == WidgetKind::AlarmList {
        data.alarms = Some(open_alarms(state, tenant, w).await?);
        return Ok(data);
    }
    // A widget's device that is not (or no longer) the tenant's shows nothing.
    let Some(device) = w.device.clone().and_then(|d| DeviceId::new(d).ok()) else {
        return Ok(data);
    };
    if w.kind == WidgetKind::CommandButton || !state.directory.has_device(tenant, &device) {
        return Ok(data);
    }
    let Some(telemetry) = state.telemetry.as_ref() else {
        return Ok(data);
    };
    let keys: Vec<String> = if w.kind == WidgetKind::Map && w.keys.is_empty() {
        MAP_KEYS.iter().map(|k| (*k).to_owned()).collect()
    } else {
        w.keys.clone()
    };
    let latest = telemetry.store.latest(tenant, &device, &keys).await?;
    data.latest = latest
        .into_iter()
        .map(|(k, p)| {
            (
                k,
                SharedPoint {
                    ts: p.ts,
                    value: p.value.to_json(),
                },
            )
        })
        .collect();
    if w.kind.shows_history() {
        let to = ferrule_core::message::now_ms() + 1;
        let range = Range {
            from: to - w.range(),
            to,
        };
        let interval = (w.range() / HISTORY_POINTS).max(1_000);
        let mut history = BTreeMap::new();
        for key in &keys {
            let points = telemetry
                .store
                .aggregate(
                    SeriesQuery::new(tenant, &device, key, range),
                    interval,
                    Agg::Avg,
                )
                .await?;
            history.insert(
                key.clone(),
                points
                    .into_iter()
                    .map(|(ts, v)| SharedPoint {
                        ts,
                        value: serde_json::Value::from(v),
                    })
                    .collect(),
            );
        }
        data.history = Some(history);
    }
    Ok(data)
}

async fn open_alarms(
    state: &AppState,
    tenant: &TenantId,
    w: &Widget,
) -> ApiResult<Vec<SharedAlarm>> {
    let Some(rules) = state.rules.as_ref() else {
        return Ok(Vec::new());
    };
    let device = w.device.clone().and_then(|d| DeviceId::new(d).ok());
    let mut shown = Vec::new();
    for open in [AlarmState::Active, AlarmState::Acknowledged] {
        let filter = AlarmFilter {
            device: device.clone(),
            state: Some(open),
            ..AlarmFilter::default()
        };
        let page = ferrule_store::PageRequest {
            limit: ALARMS_SHOWN,
            after: None,
        };
        let found = rules
            .alarms
            .list(tenant, &filter, &page)
            .await
            .map_err(|e| ApiError::Internal(format!("listing alarms: {e}")))?;
        shown.extend(found.items.into_iter().map(|a| SharedAlarm {
            device: a.device.map(|d| d.to_string()),
            alarm_type: a.alarm_type,
            severity: a.severity.as_str().into(),
            state: a.state.as_str().into(),
            count: a.count,
            last_seen: a.last_seen,
        }));
    }
    shown.sort_by_key(|a| std::cmp::Reverse(a.last_seen));
    Ok(shown)
}

//! `/devices/{id}`: one device — connection state, latest values, a live
//! chart (over [`super::live`]) and a history chart whose aggregation
//! interval keeps it under [`MAX_POINTS`] points.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrule_store::telemetry::Agg;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::device_panels::{self as panels, Forms};
use super::devices::when;
use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::devices as api;
use crate::routes::telemetry::{self, HistoryQuery, LatestQuery};
use crate::state::AppState;

/// The most points a history chart draws: a chart is some hundred pixels
/// wide, and more points only cost bytes.
const MAX_POINTS: i64 = 1000;

/// The ranges the history picker offers, with their labels.
const RANGES: &[(&str, &str, i64)] = &[
    ("15m", "Last 15 minutes", 15 * 60_000),
    ("1h", "Last hour", 3_600_000),
    ("6h", "Last 6 hours", 6 * 3_600_000),
    ("24h", "Last 24 hours", 24 * 3_600_000),
    ("7d", "Last 7 days", 7 * 24 * 3_600_000),
    ("30d", "Last 30 days", 30 * 24 * 3_600_000),
];

/// Bucket widths, smallest first; the first that keeps a range under
/// [`MAX_POINTS`] buckets is used.
const INTERVALS: &[(i64, &str)] = &[
    (1_000, "1s"),
    (5_000, "5s"),
    (10_000, "10s"),
    (30_000, "30s"),
    (60_000, "1m"),
    (300_000, "5m"),
    (600_000, "10m"),
    (1_800_000, "30m"),
    (3_600_000, "1h"),
    (3 * 3_600_000, "3h"),
    (6 * 3_600_000, "6h"),
    (12 * 3_600_000, "12h"),
    (86_400_000, "1d"),
];

/// The bucket width for a range: the smallest that keeps it under
/// [`MAX_POINTS`] buckets.
fn interval_for(range_ms: i64) -> (i64, &'static str) {
    INTERVALS
        .iter()
        .copied()
        .find(|(ms, _)| range_ms / ms <= MAX_POINTS)
        .unwrap_or((86_400_000, "1d"))
}

#[derive(Debug, Serialize)]
struct LatestRow {
    key: String,
    value: String,
    at: String,
}

async fn latest_rows(
    state: &AppState,
    console: &Console,
    id: &str,
) -> Result<Vec<LatestRow>, ApiError> {
    if state.telemetry.is_none() {
        return Ok(Vec::new());
    }
    let latest = telemetry::latest(
        State(state.clone()),
        console.caller.clone(),
        Path(id.to_owned()),
        ApiQuery(LatestQuery { keys: None }),
    )
    .await?;
    Ok(latest
        .0
        .into_iter()
        .map(|(key, p)| LatestRow {
            key,
            value: match &p.value {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            },
            at: when(jiff::Timestamp::from_millisecond(p.ts).ok()),
        })
        .collect())
}

#[derive(Debug, Serialize)]
struct CredentialRow {
    id: String,
    kind: String,
    created_at: String,
    expires_at: String,
    rotatable: bool,
}

pub async fn page(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    render(&state, &console, &id, Forms::default(), StatusCode::OK).await
}

/// The page, with what a refused form sent and its errors (`forms`).
pub async fn render(
    state: &AppState,
    console: &Console,
    id: &str,
    forms: Forms,
    status: StatusCode,
) -> Result<Response, Failure> {
    let state = state.clone();
    let id = id.to_owned();
    let device = api::get(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
    )
    .await?
    .0;
    let latest = latest_rows(&state, console, &id).await?;
    let twin = panels::twin_panel(&state, console, &id).await?;
    let commands = panels::command_rows(&state, console, &id).await?;
    let events = panels::event_rows(&state, console, &id).await?;
    let connectivity = panels::connectivity_rows(&state, console, &id).await?;
    let alarms = panels::alarm_rows(&state, console, &id).await?;
    // Credentials are for those who may change them (as in the API).
    let credentials: Vec<CredentialRow> = if console.caller.role.can_write() {
        crate::routes::credentials::list(
            State(state.clone()),
            console.caller.clone(),
            Path(id.clone()),
        )
        .await?
        .0
        .into_iter()
        .map(|c| {
            let kind = serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            CredentialRow {
                rotatable: kind == "token",
                id: c.id,
                kind,
                created_at: when(Some(c.created_at)),
                expires_at: c
                    .expires_at
                    .map(|t| when(Some(t)))
                    .unwrap_or_else(|| "never".into()),
            }
        })
        .collect()
    } else {
        Vec::new()
    };
    let keys: Vec<String> = if state.telemetry.is_some() {
        telemetry::keys(
            State(state.clone()),
            console.caller.clone(),
            Path(id.clone()),
        )
        .await?
        .0
    } else {
        Vec::new()
    };
    let ranges: Vec<_> = RANGES
        .iter()
        .map(|(v, label, _)| context! { value => v, label => label })
        .collect();
    let chrome = page::chrome(&state, console, "devices").await;
    let body = page::render(
        "device.html",
        context! { ..chrome, ..context! {
            device => context! {
                id => device.id,
                name => device.name,
                profile => device.profile,
                enabled => device.enabled,
                online => device.online,
                last_seen => when(device.last_seen),
                connected_at => when(device.connected_at),
                disconnected_at => when(device.disconnected_at),
                protocol => device.protocol,
                client_address => device.client_address,
                last_disconnect_reason => device.last_disconnect_reason,
            },
            latest => latest,
            credentials => credentials,
            keys => keys,
            ranges => ranges,
            twin => twin,
            commands => commands,
            events => events,
            connectivity => connectivity,
            alarms => alarms,
            forms => forms,
        }},
    )?;
    Ok(page::html(status, body))
}

/// The latest values table alone, for htmx polling.
pub async fn latest(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let latest = latest_rows(&state, &console, &id).await?;
    let body = page::render("device_latest.html", context! { latest => latest })?;
    Ok(page::html(StatusCode::OK, body))
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    range: Option<String>,
    key: Option<String>,
}

/// Columns for uPlot: bucket starts in seconds and their averages.
#[derive(Debug, Serialize)]
struct HistoryData {
    key: Option<String>,
    keys: Vec<String>,
    range: String,
    interval: &'static str,
    /// The range asked for, in seconds: the chart's x axis spans it whole.
    from: f64,
    to: f64,
    ts: Vec<f64>,
    values: Vec<Option<f64>>,
}

/// One key's history over a range, averaged per bucket (JSON for the
/// chart script).
pub async fn history(
    State(state): State<AppState>,
    console: Console,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<Response, Failure> {
    let (range, _, range_ms) = RANGES
        .iter()
        .copied()
        .find(|(v, _, _)| Some(*v) == p.range.as_deref())
        .unwrap_or(RANGES[1]);
    let keys = telemetry::keys(
        State(state.clone()),
        console.caller.clone(),
        Path(id.clone()),
    )
    .await?
    .0;
    let key = p
        .key
        .filter(|k| keys.contains(k))
        .or_else(|| keys.first().cloned());
    let (interval_ms, interval) = interval_for(range_ms);
    let now = jiff::Timestamp::now().as_millisecond();
    // Whole buckets, so that a refresh does not shift them.
    let to = (now / interval_ms + 1) * interval_ms;
    let mut data = HistoryData {
        from: (to - range_ms) as f64 / 1000.0,
        to: to as f64 / 1000.0,
        key: key.clone(),
        keys,
        range: range.to_owned(),
        interval,
        ts: Vec::new(),
        values: Vec::new(),
    };
    if let Some(key) = key {
        let points = telemetry::history(
            State(state.clone()),
            console.caller.clone(),
            Path(id),
            ApiQuery(HistoryQuery {
                keys: Some(key.clone()),
                from: Some((to - range_ms).to_string()),
                to: Some(to.to_string()),
                agg: Some(Agg::Avg),
                interval: Some(interval.to_owned()),
                limit: None,
                order: None,
            }),
        )
        .await?
        .0;
        for p in points.get(&key).into_iter().flatten() {
            data.ts.push(p.ts as f64 / 1000.0);
            data.values.push(p.value.as_f64());
        }
    }
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(data),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_stays_under_the_point_budget_at_the_finest_interval() {
        for (name, _, range) in RANGES {
            let (ms, _) = interval_for(*range);
            assert!(range / ms <= MAX_POINTS, "{name}");
            // And the next finer interval would not.
            if let Some(i) = INTERVALS.iter().position(|(m, _)| *m == ms)
                && i > 0
            {
                assert!(range / INTERVALS[i - 1].0 > MAX_POINTS, "{name}");
            }
        }
    }
}

//! `/`: the tenant at a glance, refreshed by htmx every few seconds.

use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ferrule_store::PageRequest;
use minijinja::context;
use serde::Serialize;

use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::state::AppState;

/// Devices read per store page when counting.
const COUNT_PAGE: u32 = 1000;
/// Most devices counted; a larger tenant shows "at least".
const MAX_COUNTED: u64 = 100_000;

const MQTT_MESSAGES_IN: &str = "ferrule_mqtt_messages_received_total";
const POINTS_STORED: &str = "ferrule_telemetry_points_stored_total";

#[derive(Debug, Serialize)]
struct Stats {
    devices_total: u64,
    devices_online: u64,
    /// More devices than [`MAX_COUNTED`]: the counts are a lower bound.
    devices_capped: bool,
    /// Server-wide, from the same counters `/metrics` exposes.
    messages_per_second: Option<f64>,
    points_stored: u64,
    open_alarms: Option<u64>,
    disk_bytes: Option<u64>,
    disk_budget_bytes: Option<u64>,
    disk_percent: Option<u64>,
}

pub async fn page(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let stats = stats_of(&state, &console).await?;
    let chrome = page::chrome(&state, &console, "overview").await;
    let body = page::render(
        "overview.html",
        context! { ..chrome, ..context! { stats => stats } },
    )?;
    Ok(page::html(StatusCode::OK, body))
}

/// The statistics fragment alone, for htmx polling.
pub async fn stats(State(state): State<AppState>, console: Console) -> Result<Response, Failure> {
    let stats = stats_of(&state, &console).await?;
    let body = page::render("overview_stats.html", context! { stats => stats })?;
    Ok(page::html(StatusCode::OK, body))
}

async fn stats_of(state: &AppState, console: &Console) -> Result<Stats, ApiError> {
    let tenant = &console.caller.tenant;
    let connectivity = state.devices.as_ref().map(|s| s.connectivity.clone());
    let (mut total, mut online, mut after) = (0u64, 0u64, None);
    loop {
        let page = state
            .store()
            .list_devices(
                tenant,
                &PageRequest {
                    limit: COUNT_PAGE,
                    after: after.take(),
                },
            )
            .await?;
        for d in &page.items {
            total += 1;
            if connectivity
                .as_ref()
                .is_some_and(|c| c.is_online(tenant, &d.id))
            {
                online += 1;
            }
        }
        match page.next {
            Some(next) if total < MAX_COUNTED => after = Some(next),
            Some(_) => break,
            None => break,
        }
    }
    let metrics = state.metrics.render();
    let messages = counter(&metrics, MQTT_MESSAGES_IN);
    let open_alarms = match &state.rules {
        Some(r) => Some(r.alarms.store().count_open_alarms(tenant).await?),
        None => None,
    };
    let (disk_bytes, disk_budget_bytes) = match &state.telemetry {
        Some(t) => {
            let budget = t.store.retention(tenant).await?.effective_budget();
            (Some(t.store.disk_bytes(tenant)), budget)
        }
        None => (None, None),
    };
    let disk_percent = match (disk_bytes, disk_budget_bytes) {
        (Some(used), Some(budget)) if budget > 0 => {
            Some((used.saturating_mul(100) / budget).min(100))
        }
        _ => None,
    };
    Ok(Stats {
        devices_total: total,
        devices_online: online,
        devices_capped: total >= MAX_COUNTED,
        messages_per_second: rate(messages),
        points_stored: counter(&metrics, POINTS_STORED) as u64,
        open_alarms,
        disk_bytes,
        disk_budget_bytes,
        disk_percent,
    })
}

/// The sum of a counter's series in the Prometheus text.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Messages per second since the previous reading (by any viewer): the
/// counters only grow, so two readings make a rate. The first reading has
/// none yet.
fn rate(count: f64) -> Option<f64> {
    static LAST: Mutex<Option<(Instant, f64, Option<f64>)>> = Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    match *last {
        // Readings closer than a second apart keep the last rate, so that
        // many open pages do not turn it into noise.
        Some((at, _, rate)) if now.duration_since(at).as_secs_f64() < 1.0 => rate,
        Some((at, before, _)) => {
            let r = ((count - before).max(0.0) / now.duration_since(at).as_secs_f64() * 10.0)
                .round()
                / 10.0;
            *last = Some((now, count, Some(r)));
            Some(r)
        }
        None => {
            *last = Some((now, count, None));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_their_series_only() {
        let text = "# TYPE x counter\nx_total{a=\"1\"} 3\nx_total 4\nx_total_other 100\n";
        assert_eq!(counter(text, "x_total"), 7.0);
        assert_eq!(counter(text, "missing"), 0.0);
    }
}

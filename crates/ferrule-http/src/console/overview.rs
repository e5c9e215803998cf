//! `/`: the tenant at a glance, refreshed by htmx every few seconds: its
//! devices, its ingest rate, its disk use against its budget and when that
//! fills at the current rate; an admin also sees the whole server (the
//! report of `GET /api/v1/system`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ferrule_store::PageRequest;
use minijinja::context;
use serde::Serialize;

use super::page::{self, Failure};
use super::session::Console;
use crate::error::ApiError;
use crate::routes::system::{self, SystemView};
use crate::state::AppState;

/// Devices read per store page when counting.
const COUNT_PAGE: u32 = 1000;
/// Most devices counted; a larger tenant shows "at least".
const MAX_COUNTED: u64 = 100_000;

#[derive(Debug, Serialize)]
struct Stats {
    devices_total: u64,
    devices_online: u64,
    /// More devices than [`MAX_COUNTED`]: the counts are a lower bound.
    devices_capped: bool,
    /// The tenant's own, over the last minute; `None` until measured.
    messages_per_second: Option<f64>,
    points_per_second: Option<f64>,
    open_alarms: Option<u64>,
    disk_bytes: Option<u64>,
    disk_budget_bytes: Option<u64>,
    disk_percent: Option<u64>,
    /// Growth of the tenant's disk use per day, and when its budget fills.
    disk_bytes_per_day: Option<f64>,
    days_until_full: Option<f64>,
    /// The whole server, for admins only.
    system: Option<SystemView>,
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
    // The same figures as the API's system report, for this tenant only.
    let load = system::tenant_view(
        state,
        tenant,
        total as usize,
        0,
        state.load.rates_of(tenant),
        state.load.measured(),
    )
    .await?;
    let system = if console.is_admin() {
        Some(system::report(state).await?)
    } else {
        None
    };
    Ok(Stats {
        devices_total: total,
        devices_online: online,
        devices_capped: total >= MAX_COUNTED,
        messages_per_second: load.messages_per_s,
        points_per_second: load.points_per_s,
        open_alarms,
        disk_bytes,
        disk_budget_bytes,
        disk_percent,
        disk_bytes_per_day: load.bytes_per_day,
        days_until_full: load.days_until_full,
        system,
    })
}

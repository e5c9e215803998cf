//! `GET /api/v1/system`: the server at a glance, for admins — connections,
//! memory, disk, ingest against the capacity our benchmarks measured, and
//! each tenant's load and how soon its disk budget fills at that rate.

use std::path::Path;

use axum::Json;
use axum::extract::State;
use ferrule_core::TenantId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Caller;
use crate::error::{ApiResult, Problem};
use crate::load::{self, BENCHMARK_SOURCE, BENCHMARKED_POINTS_PER_S, TenantRates, round1};
use crate::state::AppState;

/// Most directory entries walked to size the data directory; a larger
/// directory is reported as at least the size counted.
const MAX_DIR_ENTRIES: usize = 100_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemView {
    pub version: &'static str,
    /// Seconds since the server started.
    pub uptime_s: u64,
    pub connections: ConnectionsView,
    pub memory: MemoryView,
    pub ingest: IngestView,
    pub disk: DiskView,
    /// Every tenant, by id.
    pub tenants: Vec<TenantLoadView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionsView {
    /// Null when the broker is not running.
    pub mqtt: Option<MqttConnectionsView>,
    /// Open HTTP connections (MQTT over WebSocket included); null when
    /// unknown.
    pub http: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MqttConnectionsView {
    pub tcp: u64,
    pub tls: u64,
    pub websocket: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryView {
    /// Resident memory of the process; null where the platform does not
    /// say (only Linux is read).
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestView {
    /// Messages from clients per second over the last minute, every tenant;
    /// null until two readings exist (a few seconds after start).
    pub messages_per_s: Option<f64>,
    /// Telemetry points per second taken for storage, every tenant.
    pub points_per_s: Option<f64>,
    /// Durable points per second one server sustained in our benchmarks.
    pub capacity_points_per_s: f64,
    /// Where that figure was measured.
    pub capacity_source: &'static str,
    /// `points_per_s / capacity_points_per_s`.
    pub use_ratio: Option<f64>,
    /// Seconds the rates are taken over.
    pub window_s: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiskView {
    /// Bytes of every file under the data directory; null when there is
    /// none (external storage) or it cannot be read.
    pub data_dir_bytes: Option<u64>,
    /// Bytes free for the server on the data directory's file system.
    pub free_bytes: Option<u64>,
}

/// One tenant's load.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantLoadView {
    pub id: String,
    pub devices: u64,
    /// Devices with an MQTT connection open now.
    pub online: u64,
    /// Open MQTT connections (devices, users and keys).
    pub connections: u64,
    /// Bytes its telemetry and events take.
    pub disk_bytes: u64,
    /// The disk budget in force; null is no limit.
    pub budget_bytes: Option<u64>,
    pub messages_per_s: Option<f64>,
    pub points_per_s: Option<f64>,
    /// Growth of its disk use per day, over up to the last hour (retention
    /// deletions included).
    pub bytes_per_day: Option<f64>,
    /// Days until the budget is full at that growth; null when no budget
    /// or the disk use does not grow; 0 when full.
    pub days_until_full: Option<f64>,
}

/// The server's state (admins).
#[utoipa::path(get, operation_id = "getSystem", path = "/api/v1/system", tag = "ops",
    responses((status = 200, body = SystemView), (status = 401, body = Problem),
        (status = 403, body = Problem, description = "Not an admin")))]
pub async fn get(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<SystemView>> {
    caller.require_admin_for("the server's state is for admins")?;
    Ok(Json(report(&state).await?))
}

/// What `GET /api/v1/system` answers; the console's admin overview shows
/// the same.
pub(crate) async fn report(state: &AppState) -> ApiResult<SystemView> {
    let rates = state.load.rates();
    let measured = state.load.measured();
    let mqtt = state.mqtt.as_ref().map(|m| m.broker.connections());
    let mut tenants: Vec<(TenantId, usize)> = state.directory.device_counts();
    tenants.sort_by(|a, b| a.0.cmp(&b.0));
    let mut views = Vec::with_capacity(tenants.len());
    for (tenant, devices) in tenants {
        let connections = mqtt
            .as_ref()
            .and_then(|m| m.per_tenant.get(&tenant).copied())
            .unwrap_or(0);
        let rates = rates.get(&tenant).copied();
        views.push(tenant_view(state, &tenant, devices, connections, rates, measured).await?);
    }
    let (mut messages, mut points) = (0.0, 0.0);
    for r in rates.values() {
        messages += r.messages_per_s;
        points += r.points_per_s;
    }
    let ingest = IngestView {
        messages_per_s: measured.then(|| round1(messages)),
        points_per_s: measured.then(|| round1(points)),
        capacity_points_per_s: BENCHMARKED_POINTS_PER_S,
        capacity_source: BENCHMARK_SOURCE,
        use_ratio: measured
            .then(|| (points / BENCHMARKED_POINTS_PER_S * 10_000.0).round() / 10_000.0),
        window_s: load::RATE_WINDOW.as_secs(),
    };
    let data_dir = state.settings.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || disk_of(data_dir.as_deref()))
        .await
        .unwrap_or(DiskView {
            data_dir_bytes: None,
            free_bytes: None,
        });
    Ok(SystemView {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.load.uptime().as_secs(),
        connections: ConnectionsView {
            mqtt: mqtt.map(|m| MqttConnectionsView {
                tcp: m.tcp as u64,
                tls: m.tls as u64,
                websocket: m.websocket as u64,
                total: (m.tcp + m.tls + m.websocket) as u64,
            }),
            http: state.http_connections.as_ref().map(|c| c.open() as u64),
        },
        memory: MemoryView {
            rss_bytes: load::resident_bytes(),
        },
        ingest,
        disk,
        tenants: views,
    })
}

/// One tenant's load, for the system report and the tenant's own overview.
/// `measured`: readings have been taken, so a tenant without any sent
/// nothing (rates 0, not unknown).
pub(crate) async fn tenant_view(
    state: &AppState,
    tenant: &TenantId,
    devices: usize,
    connections: usize,
    rates: Option<TenantRates>,
    measured: bool,
) -> ApiResult<TenantLoadView> {
    let online = state
        .devices
        .as_ref()
        .map_or(0, |d| d.connectivity.online_count(tenant));
    let (disk_bytes, budget_bytes) = match &state.telemetry {
        Some(t) => (
            t.store.disk_bytes(tenant),
            t.store.retention(tenant).await?.effective_budget(),
        ),
        None => (0, None),
    };
    let rates = rates.or(measured.then(TenantRates::default));
    Ok(TenantLoadView {
        id: tenant.to_string(),
        devices: devices as u64,
        online: online as u64,
        connections: connections as u64,
        disk_bytes,
        budget_bytes,
        messages_per_s: rates.map(|r| r.messages_per_s),
        points_per_s: rates.map(|r| r.points_per_s),
        bytes_per_day: rates.map(|r| r.bytes_per_day),
        days_until_full: rates.and_then(|r| r.days_until_full(disk_bytes, budget_bytes)),
    })
}

/// The data directory's size and the space left on its file system.
fn disk_of(dir: Option<&Path>) -> DiskView {
    let Some(dir) = dir else {
        return DiskView {
            data_dir_bytes: None,
            free_bytes: None,
        };
    };
    DiskView {
        data_dir_bytes: dir_bytes(dir),
        free_bytes: free_bytes(dir),
    }
}

/// Sum of the sizes of the files under `dir` (symbolic links not followed).
fn dir_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            if d == dir {
                return None;
            }
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_DIR_ENTRIES {
                return Some(total);
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                pending.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Some(total)
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    // Blocks available to unprivileged users, as `df` reports them.
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

#[cfg(not(unix))]
fn free_bytes(_: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_sized_and_its_file_system_read() {
        let dir = std::env::temp_dir().join(format!("ferrule-system-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("sub/b"), [0u8; 23]).unwrap();
        let disk = disk_of(Some(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(disk.data_dir_bytes, Some(123));
        if cfg!(unix) {
            assert!(disk.free_bytes.is_some_and(|b| b > 0));
        }
        assert_eq!(
            disk_of(Some(Path::new("/nonexistent/ferrule"))).data_dir_bytes,
            None
        );
    }
}

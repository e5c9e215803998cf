//! The data directory the backup bench moves: one tenant, `devices`
//! devices with `keys` series each, every series a realistic 1 s signal,
//! written through the same stores a server writes through (metadata in
//! `meta.db`, points durably appended to `telemetry.db`, then sealed), so
//! the files are the ones users have on disk.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferrule_bus::{Durability, Ledger, Ticket};
use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::telemetry::TelemetryStore;
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use ferrule_store::{MetaStore, NewDevice};

use crate::signal::{Rng, Temperature};
use crate::telemetry::signal::{JITTER_MS, T0};
use crate::telemetry::store::BACKPRESSURE_PAUSE;

/// Seconds of every series appended at once for one device (all its keys):
/// a gateway's batch.
const WINDOW_SECONDS: usize = 1_000;
/// What the series are called, in the order a device's keys take them.
const KEY_NAMES: &[&str] = &[
    "temp", "humidity", "pressure", "co2", "voltage", "current", "power", "rssi", "battery", "flow",
];

/// The shape of the data directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub(super) devices: usize,
    pub(super) keys: usize,
    /// Points in each series (1 s apart).
    pub(super) seconds: usize,
    /// Set for a data directory the bench did not write: its point count.
    pub(super) existing: Option<u64>,
}

impl Shape {
    /// At least `points` points over `devices` × `keys` series.
    pub(super) fn for_points(points: u64, devices: usize, keys: usize) -> Self {
        let series = (devices * keys).max(1) as u64;
        Self {
            devices,
            keys,
            seconds: points.div_ceil(series) as usize,
            existing: None,
        }
    }

    /// A data directory already holding `points`.
    pub(super) fn existing(points: u64) -> Self {
        Self {
            devices: 0,
            keys: 0,
            seconds: 0,
            existing: Some(points),
        }
    }

    pub(super) fn points(&self) -> u64 {
        self.existing
            .unwrap_or((self.devices * self.keys * self.seconds) as u64)
    }
}

/// Writes the data directory into `dir` (which must not hold one) and
/// returns how long it took.
pub(super) async fn fill(dir: &Path, shape: Shape) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let tenant = TenantId::new("bench")?;
    let devices = create_devices(dir, &tenant, shape.devices).await?;
    let durability = Durability::default();
    let store = EmbeddedTelemetry::open(dir, TelemetryOptions::default(), durability.clone())
        .context("opening the telemetry store")?;
    // One signal per series, each its own seed: the store sees distinct
    // values, as from distinct sensors.
    let mut signals: Vec<(Rng, Temperature)> = (0..shape.devices * shape.keys)
        .map(|i| (Rng::new(i as u64 + 1), Temperature::default()))
        .collect();
    let mut last = 0;
    let mut second = 0;
    while second < shape.seconds {
        let window = second..(second + WINDOW_SECONDS).min(shape.seconds);
        for (d, device) in devices.iter().enumerate() {
            let mut readings = Vec::with_capacity(window.len() * shape.keys);
            for k in 0..shape.keys {
                let (rng, temperature) = &mut signals[d * shape.keys + k];
                let key = KEY_NAMES[k % KEY_NAMES.len()];
                // A different level per key, so keys do not repeat each other.
                let offset = 10.0 * k as f64;
                for s in window.clone() {
                    readings.push(Reading {
                        server_stamped: false,
                        ts: T0 + 1000 * s as i64 + rng.jitter(JITTER_MS),
                        key: key.into(),
                        value: TelemetryValue::Number(offset + temperature.sample(rng, s)),
                    });
                }
            }
            let appended = store.append(&tenant, device, readings, Vec::new())?;
            last = appended.ticket;
            if let Some(drained) = appended.backpressure {
                let _ = tokio::time::timeout(BACKPRESSURE_PAUSE, drained.notified()).await;
            }
        }
        second = window.end;
    }
    durability.wait(Ticket::on(Ledger::Telemetry, last)).await;
    store.seal_all().await?;
    store.close().await?;
    Ok(started.elapsed())
}

/// The tenant and its devices in `meta.db`.
async fn create_devices(
    dir: &Path,
    tenant: &TenantId,
    count: usize,
) -> anyhow::Result<Vec<DeviceId>> {
    let meta = EmbeddedStore::open(dir).context("opening meta.db")?;
    meta.create_tenant(tenant, "Backup bench").await?;
    let mut devices = Vec::with_capacity(count);
    for i in 0..count {
        let id = DeviceId::new(format!("sensor-{i:05}"))?;
        meta.create_device(&NewDevice {
            tenant: tenant.clone(),
            id: id.clone(),
            name: format!("Sensor {i}"),
            profile: "default".into(),
            attributes: serde_json::json!({ "site": format!("site-{}", i % 17) }),
        })
        .await?;
        devices.push(id);
    }
    Ok(devices)
}

//! Telemetry: the time series and events devices send, and the queries
//! over them.
//!
//! [`TelemetryStore`] is what the rest of Ferrule sees: `append` queues a
//! device's readings and events and returns a write number on
//! [`Ledger::Telemetry`](ferrule_core::Ledger) (acknowledge once it is
//! committed); the queries answer raw points, bucketed aggregates, latest
//! values, keys, events and exports. [`embedded::EmbeddedTelemetry`]
//! implements it in the data directory; a PostgreSQL backend will implement
//! the same trait. [`retention`] applies tenants' retention settings through
//! the trait, whatever the backend. [`purge`](TelemetryStore::purge) removes
//! what a deleted device or tenant kept, so that a new one of the same id
//! starts empty. [`conformance`] is the test suite every backend must pass.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub mod observe;
pub mod retention;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ferrule_core::{DeviceId, TenantId};
use serde::{Deserialize, Serialize};

use crate::error::BoxError;

pub use ferrule_core::telemetry::{Reading, TelemetryValue};

/// One stored point of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub value: TelemetryValue,
}

/// A time range `[from, to)` in ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

impl Range {
    pub const ALL: Range = Range {
        from: i64::MIN,
        to: i64::MAX,
    };

    pub fn contains(&self, ts: i64) -> bool {
        self.from <= ts && ts < self.to
    }
}

/// One series — a device's key — over a time range: what raw and
/// aggregate queries read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub key: String,
    pub range: Range,
}

impl SeriesQuery {
    pub fn new(tenant: &TenantId, device: &DeviceId, key: &str, range: Range) -> Self {
        Self {
            tenant: tenant.clone(),
            device: device.clone(),
            key: key.to_owned(),
            range,
        }
    }
}

/// A device's events in a time range, oldest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub tenant: TenantId,
    pub device: DeviceId,
    /// Only events of this type; every type when `None`.
    pub event_type: Option<String>,
    pub range: Range,
    /// Only events after this event id (the last one of the previous page).
    pub after: Option<i64>,
    pub limit: usize,
}

impl EventQuery {
    /// The first `limit` events of any type in `range`.
    pub fn new(tenant: &TenantId, device: &DeviceId, range: Range, limit: usize) -> Self {
        Self {
            tenant: tenant.clone(),
            device: device.clone(),
            event_type: None,
            range,
            after: None,
            limit,
        }
    }
}

/// Which end of a range raw points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Oldest,
    Newest,
}

/// An aggregate per time bucket; over numbers (bools count as 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

/// An event as a device sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub ts: i64,
    pub event_type: String,
    pub payload: Bytes,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub device: DeviceId,
    pub ts: i64,
    pub event_type: String,
    pub payload: Vec<u8>,
}

/// One record of an export, in series order, then events.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportRecord {
    Point {
        device: DeviceId,
        key: Arc<str>,
        point: Point,
    },
    Event(Event),
}

/// A tenant's retention settings; `None` days keep data forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// Days kept for devices whose profile has no override; `None` uses the
    /// server's default.
    pub default_days: Option<u32>,
    /// Per device profile, days kept.
    pub profiles: BTreeMap<String, u32>,
    /// Bytes of telemetry and events the tenant may keep, as its owner set
    /// it; `None` is no limit of the owner's.
    pub disk_budget_bytes: Option<u64>,
    /// The limit a server admin set, which the tenant's owner cannot lift
    /// (only lower, with `disk_budget_bytes`); `None` is no ceiling.
    #[serde(default)]
    pub disk_budget_ceiling_bytes: Option<u64>,
}

impl RetentionSettings {
    /// The budget in force: the lower of the owner's and the admin's.
    pub fn effective_budget(&self) -> Option<u64> {
        match (self.disk_budget_bytes, self.disk_budget_ceiling_bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whose telemetry a [`purge`](TelemetryStore::purge) removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    /// One device's points and events.
    Device(TenantId, DeviceId),
    /// Everything of a tenant: every device's points and events, and the
    /// tenant's retention settings and disk budget.
    Tenant(TenantId),
}

impl PurgeScope {
    pub fn tenant(&self) -> &TenantId {
        match self {
            PurgeScope::Device(t, _) | PurgeScope::Tenant(t) => t,
        }
    }
}

/// A purge queued by [`TelemetryStore::purge`]; [`done`](Self::done)
/// resolves once it is durable.
#[derive(Debug)]
pub struct PurgeQueued(tokio::sync::oneshot::Receiver<Result<()>>);

impl PurgeQueued {
    /// For backends: `tx` is sent the outcome once the purge is durable.
    pub fn channel() -> (tokio::sync::oneshot::Sender<Result<()>>, Self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, Self(rx))
    }

    /// Waits until the purged data is gone for every reader and stays gone
    /// across a crash.
    pub async fn done(self) -> Result<()> {
        self.0.await.map_err(|_| TelemetryError::Closed)?
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub points: u64,
    pub events: u64,
}

/// Why a telemetry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the tenant's telemetry disk budget of {budget} bytes is used up")]
    QuotaExceeded { budget: u64 },
    #[error("telemetry storage is behind; retry shortly")]
    Overloaded,
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The backend failed (I/O, corruption, a lost thread); its error is
    /// kept as the source.
    #[error("telemetry storage failed: {0}")]
    Storage(#[source] BoxError),
    #[error("telemetry storage is closed")]
    Closed,
}

pub type Result<T, E = TelemetryError> = std::result::Result<T, E>;

impl TelemetryError {
    /// The backend failed for a reason it states (stored data it cannot
    /// read, a lost thread) rather than an error of its own.
    pub fn storage(what: impl Into<String>) -> Self {
        TelemetryError::Storage(what.into().into())
    }
}

impl From<rusqlite::Error> for TelemetryError {
    fn from(e: rusqlite::Error) -> Self {
        TelemetryError::Storage(Box::new(e))
    }
}

impl From<std::io::Error> for TelemetryError {
    fn from(e: std::io::Error) -> Self {
        TelemetryError::Storage(Box::new(e))
    }
}

impl From<tokio::task::JoinError> for TelemetryError {
    fn from(e: tokio::task::JoinError) -> Self {
        TelemetryError::Storage(Box::new(e))
    }
}

impl From<ferrule_tsdb::ChunkError> for TelemetryError {
    fn from(e: ferrule_tsdb::ChunkError) -> Self {
        TelemetryError::Storage(Box::new(e))
    }
}

/// The result of queueing an append.
#[derive(Debug)]
pub struct Appended {
    /// Write number on the telemetry ledger; 0 when nothing needs waiting
    /// for (`durability = "none"`, or nothing to store).
    pub ticket: u64,
    /// Set when the writer's queue is long: a publisher that can wait should.
    pub backpressure: Option<Arc<tokio::sync::Notify>>,
}

/// A telemetry backend.
#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Queues readings and events of one device. Never blocks; the data is
    /// durable once the returned ticket is committed on the telemetry ledger.
    fn append(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        readings: Vec<Reading>,
        events: Vec<NewEvent>,
    ) -> Result<Appended>;

    /// Up to `limit` points of the series, from the end `order` says,
    /// returned in ascending time order either way.
    async fn raw(&self, series: SeriesQuery, order: Order, limit: usize) -> Result<Vec<Point>>;

    /// `agg` of the series per bucket `[range.from + i·interval, …)`;
    /// empty buckets are left out. Strings have no numeric aggregate and
    /// are skipped.
    async fn aggregate(
        &self,
        series: SeriesQuery,
        interval_ms: i64,
        agg: Agg,
    ) -> Result<Vec<(i64, f64)>>;

    /// The newest point of each key (all keys when `keys` is empty).
    async fn latest(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        keys: &[String],
    ) -> Result<BTreeMap<String, Point>>;

    /// The keys a device has sent, sorted.
    async fn keys(&self, tenant: &TenantId, device: &DeviceId) -> Result<Vec<String>>;

    /// Devices of the tenant that have telemetry or events, sorted.
    async fn devices(&self, tenant: &TenantId) -> Result<Vec<DeviceId>>;

    /// The events the query selects, oldest (lowest id) first.
    async fn events(&self, query: EventQuery) -> Result<Vec<Event>>;

    /// Streams a tenant's points and events in `range` into `sink`, a
    /// series at a time (memory stays bounded); stops early when `sink`
    /// returns false. Blocking: run it off the async runtime.
    fn export(
        &self,
        tenant: &TenantId,
        range: Range,
        sink: &mut dyn FnMut(ExportRecord) -> bool,
    ) -> Result<()>;

    async fn retention(&self, tenant: &TenantId) -> Result<RetentionSettings>;
    async fn set_retention(&self, tenant: &TenantId, settings: RetentionSettings) -> Result<()>;

    /// Deletes a device's points and events older than `cutoff` (ms epoch).
    async fn delete_before(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        cutoff: i64,
    ) -> Result<Deleted>;

    /// Removes everything a deleted device or tenant kept (see
    /// [`PurgeScope`]). Never blocks: the purge is queued in order with
    /// appends, so whatever was appended before it is removed with it and
    /// whatever is appended after it belongs to a new device or tenant of
    /// the same id, which starts empty. Once [`PurgeQueued::done`] resolves,
    /// no query returns the purged data, the tenant's disk use no longer
    /// counts it, and a crash does not bring it back; the space itself may
    /// be given back later, in the background.
    fn purge(&self, scope: PurgeScope) -> Result<PurgeQueued>;

    /// Bytes the tenant's telemetry and events take, sealed or not.
    fn disk_bytes(&self, tenant: &TenantId) -> u64;

    /// True while the store is behind (its recent log near its bound, or
    /// its queue long): a publisher that cannot be slowed down, such as an
    /// HTTP request, should be asked to retry later rather than queued.
    fn busy(&self) -> bool {
        false
    }

    /// Seals every recent point into compressed chunks now (shutdown,
    /// benchmarks); normally sealing runs in the background.
    async fn seal_all(&self) -> Result<()>;

    /// Writes what is queued, seals, and stops the writer.
    async fn close(&self) -> Result<()>;
}

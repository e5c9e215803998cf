//! The embedded telemetry store: SQLite (`telemetry.db` in the data
//! directory) holding a durable recent log and compressed chunks, with the
//! unsealed points of each series in memory.
//!
//! Write path: [`append`](EmbeddedTelemetry::append) numbers the request
//! and queues it to the [`writer`] thread, which group-commits batches to
//! the log and reports them on the telemetry ledger; a PUBACK or 2xx waits
//! for that. Points then sit in their series' head until sealed into a
//! chunk (`ferrule-tsdb` format). On start, the log rows not yet sealed are
//! replayed into the heads. Reads merge a series' chunks with a snapshot of
//! its head, the head winning a tie on a timestamp (last write wins).
//! Deleted devices and tenants are detached at once and their rows removed
//! in the background ([`purge`]).

mod catalog;
mod chunks;
pub mod counts;
mod lanes;
mod logbody;
mod purge;
mod read;
mod schema;
mod tenant_move;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferrule_core::Durability;
use ferrule_core::telemetry::Reading;
use ferrule_core::{DeviceId, TenantId};
use ferrule_tsdb::Kind;
use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};

use self::catalog::{Catalog, Series};
pub use self::tenant_move::{
    ImportedTelemetry, extract_tenant, prepare_source as prepare_tenant_extract,
};
use self::writer::{Request, Writer};
use super::{
    Agg, Appended, Deleted, Event, EventQuery, ExportRecord, NewEvent, Order, Point, PurgeQueued,
    PurgeScope, Range, Result, RetentionSettings, SeriesQuery, TelemetryError, TelemetryStore,
    observe,
};

/// The file in the data directory.
pub const FILE: &str = "telemetry.db";

pub use schema::pending_migrations;

/// The `telemetry.db` schema version this binary writes.
pub const SCHEMA_VERSION: u32 = schema::VERSION as u32;

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// Commits wait for the disk; off, acknowledgements do not wait at all
    /// (`durability = "none"`).
    pub sync: bool,
    /// A head is sealed this long after its first point, even if small.
    pub seal_age: Duration,
    /// Points in all heads together before the largest are sealed early.
    pub max_head_points: usize,
    /// Points queued for the writer before publishers are asked to wait.
    pub max_queued_points: usize,
    /// Most points per sealed chunk: 8192 is about 2¼ hours of a 1 s
    /// series, large enough that the header is noise (< 0.01 byte per
    /// point), small enough that a late point rewrites little.
    pub chunk_points: usize,
    /// Pause between two steps of removing a deleted device's or tenant's
    /// rows in the background (each step deletes a bounded number).
    pub purge_interval: Duration,
    /// Bytes the recent log may hold. Before a commit would pass it, the
    /// series holding its oldest rows are sealed early so the rows can go;
    /// from three quarters of it on, publishers are slowed (MQTT) or asked
    /// to retry (HTTP), since sealing is falling behind.
    pub max_log_bytes: u64,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            sync: true,
            seal_age: Duration::from_secs(15 * 60),
            max_head_points: 2_000_000,
            max_queued_points: 500_000,
            chunk_points: 8192,
            purge_interval: Duration::from_millis(10),
            max_log_bytes: 128 << 20,
        }
    }
}

/// What the writer and the readers share.
pub(crate) struct Inner {
    path: PathBuf,
    options: TelemetryOptions,
    catalog: RwLock<Catalog>,
    queue: Mutex<Queue>,
    queued_points: AtomicUsize,
    /// Bytes of the recent log's rows (kept by the writer).
    log_bytes: AtomicU64,
    drained: Arc<Notify>,
    durability: Durability,
    readers: Mutex<Vec<Connection>>,
    usage: Mutex<HashMap<TenantId, i64>>,
    settings: RwLock<HashMap<TenantId, RetentionSettings>>,
    /// Event ids at or below which purged devices' and tenants' events are
    /// hidden, until the background purge has deleted them.
    horizons: RwLock<purge::Horizons>,
    closed: AtomicBool,
}

struct Queue {
    submitted: u64,
    tx: Option<mpsc::Sender<Request>>,
}

pub(crate) fn kind_code(kind: Kind) -> i64 {
    match kind {
        Kind::F64 => 1,
        Kind::Bool => 2,
        Kind::Str => 3,
    }
}

pub(crate) fn kind_from_code(code: i64) -> Option<Kind> {
    match code {
        1 => Some(Kind::F64),
        2 => Some(Kind::Bool),
        3 => Some(Kind::Str),
        _ => None,
    }
}

impl Inner {
    fn add_usage(&self, tenant: &TenantId, delta: i64) {
        if delta == 0 {
            return;
        }
        *self.usage.lock().entry(tenant.clone()).or_default() += delta;
        self.publish_usage(tenant);
    }

    /// Bytes kept for a tenant: chunks, events, and heads at 16 bytes a point.
    fn bytes(&self, tenant: &TenantId) -> u64 {
        self.usage.lock().get(tenant).copied().unwrap_or(0).max(0) as u64
    }

    fn budget(&self, tenant: &TenantId) -> Option<u64> {
        self.settings
            .read()
            .get(tenant)
            .and_then(RetentionSettings::effective_budget)
    }

    /// Gauges for the tenant's disk use and budget, whose warning turns on
    /// at 80 % so operators act before ingest is refused.
    fn publish_usage(&self, tenant: &TenantId) {
        observe::TenantDiskUse {
            tenant,
            used: self.bytes(tenant),
            budget: self.budget(tenant),
        }
        .emit();
    }

    fn send(&self, request: Request) -> Result<()> {
        let q = self.queue.lock();
        match &q.tx {
            Some(tx) => tx.send(request).map_err(|_| TelemetryError::Closed),
            None => Err(TelemetryError::Closed),
        }
    }

    fn dequeued(&self, points: usize) {
        let before = self.queued_points.fetch_sub(points, Ordering::AcqRel);
        let after = before.saturating_sub(points);
        if after < self.options.max_queued_points / 2 {
            self.drained.notify_waiters();
        }
    }

    /// Whether the recent log is near its bound: sealing is behind.
    fn log_is_full(&self) -> bool {
        self.log_bytes.load(Ordering::Acquire) >= self.options.max_log_bytes / 4 * 3
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => open_connection(&self.path, self.options.sync)?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock();
        if pool.len() < READERS_KEPT {
            pool.push(conn);
        }
        result
    }
}

/// Idle read connections kept open.
const READERS_KEPT: usize = 8;

fn open_connection(path: &Path, sync: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    schema::configure(&conn, sync)?;
    Ok(conn)
}

/// The embedded telemetry store.
pub struct EmbeddedTelemetry {
    inner: Arc<Inner>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedTelemetry {
    /// Opens (or creates) `telemetry.db` in `dir`, replays the recent log,
    /// and starts the writer, which reports commits to `durability`.
    pub fn open(dir: &Path, options: TelemetryOptions, durability: Durability) -> Result<Self> {
        let path = dir.join(FILE);
        let conn = open_connection(&path, options.sync)?;
        schema::migrate(&conn)?;
        let (pending, horizons) = purge::load(&conn)?;
        let (catalog, last_seq) = load(&conn, &pending)?;
        let usage = load_usage(&conn, &catalog, &horizons)?;
        let settings = load_settings(&conn)?;
        let next_event_id = next_event_id(&conn)?;
        let log_rows = log_rows(&conn)?;
        let log_bytes: u64 = log_rows.values().sum();
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            path,
            options,
            catalog: RwLock::new(catalog),
            queue: Mutex::new(Queue {
                submitted: last_seq,
                tx: Some(tx),
            }),
            queued_points: AtomicUsize::new(0),
            log_bytes: AtomicU64::new(log_bytes),
            drained: Arc::new(Notify::new()),
            durability,
            readers: Mutex::new(Vec::new()),
            usage: Mutex::new(usage),
            settings: RwLock::new(settings),
            horizons: RwLock::new(horizons),
            closed: AtomicBool::new(false),
        });
        let tenants: Vec<TenantId> = inner.usage.lock().keys().cloned().collect();
        for t in &tenants {
            inner.publish_usage(t);
        }
        let writer = Writer {
            inner: inner.clone(),
            conn,
            rx,
            last_seal_check: Instant::now(),
            last_vacuum: Instant::now(),
            committed_seq: last_seq,
            next_event_id,
            pending,
            next_reclaim: Instant::now(),
            log_rows,
        };
        let handle = std::thread::Builder::new()
            .name("telemetry-writer".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            inner,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Points waiting in memory for sealing (for tests and metrics).
    pub fn head_points(&self) -> usize {
        self.inner.catalog.read().head_points
    }

    /// Rows of purged devices and tenants still on disk: their chunks and
    /// events (for tests).
    pub fn purge_leftovers(&self) -> Result<u64> {
        self.inner.with_reader(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM chunks WHERE series IN (SELECT id FROM purged_series))
                      + (SELECT count(*) FROM purged_events)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64).map_err(TelemetryError::from)
        })
    }

    /// Bytes of sealed chunk data and of the database file, for benchmarks.
    pub fn footprint(&self) -> Result<(u64, u64)> {
        self.inner.with_reader(|c| {
            let chunk_bytes: i64 = c.query_row(
                "SELECT coalesce(sum(length(data)), 0) FROM chunks",
                [],
                |r| r.get(0),
            )?;
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((chunk_bytes as u64, ((pages - free) * size) as u64))
        })
    }

    /// Imports tenant `from` of a tenant extract (see
    /// [`extract_tenant`]) as tenant `to`, which must have no telemetry
    /// here: purge it first. Ordered with appends like a purge.
    pub async fn import_tenant(
        &self,
        source: PathBuf,
        from: TenantId,
        to: TenantId,
    ) -> Result<ImportedTelemetry> {
        self.request(|done| Request::ImportTenant {
            source,
            from,
            to,
            done,
        })
        .await
    }

    async fn request<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (done, rx) = oneshot::channel();
        self.inner.send(make(done))?;
        rx.await.map_err(|_| TelemetryError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(|c| f(&inner, c))).await?
    }
}

/// Loads the series and replays the log into their heads, skipping purged
/// series; returns the catalog and the highest write number ever used (new
/// ones go above it).
fn load(conn: &Connection, purged: &purge::Pending) -> Result<(Catalog, u64)> {
    let mut catalog = Catalog::default();
    let mut sealed: HashMap<u64, u64> = HashMap::new();
    let mut last_seq = 0u64;
    // A purged series' id is never given again while anything of it is
    // left.
    for (id, p) in &purged.series {
        catalog.next_id = catalog.next_id.max(id + 1);
        last_seq = last_seq.max(p.last_seq);
    }
    {
        let mut q = conn.prepare(
            "SELECT id, tenant, device, key, kind, sealed_seq, deleted_before FROM series",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let tenant: String = r.get(1)?;
            let device: String = r.get(2)?;
            let key: String = r.get(3)?;
            let kind = kind_from_code(r.get(4)?)
                .ok_or_else(|| TelemetryError::storage("unknown series kind"))?;
            let sealed_seq: i64 = r.get(5)?;
            let (Ok(tenant), Ok(device)) = (TenantId::new(&tenant), DeviceId::new(&device)) else {
                continue;
            };
            let mut s = Series::new(tenant, device, key.into(), kind);
            s.deleted_before = r.get(6)?;
            sealed.insert(id as u64, sealed_seq as u64);
            last_seq = last_seq.max(sealed_seq as u64);
            catalog.insert(id as u64, s);
        }
    }
    let mut q = conn.prepare("SELECT seq, body FROM log ORDER BY seq")?;
    let mut rows = q.query([])?;
    let mut replayed = 0usize;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        let body: Vec<u8> = r.get(1)?;
        last_seq = last_seq.max(seq);
        let kind_of = |id| {
            catalog
                .series
                .get(&id)
                .map(|s| s.kind)
                .or_else(|| purged.series.get(&id).map(|p| p.kind))
        };
        let points = logbody::points(&body, kind_of)
            .ok_or_else(|| TelemetryError::storage(format!("log batch {seq} is malformed")))?;
        for (id, ts, value) in points {
            // Purged series are not in the catalog.
            let Some(s) = catalog.series.get_mut(&id) else {
                continue;
            };
            // Already in a chunk, or expired by retention.
            if seq <= sealed.get(&id).copied().unwrap_or(0) || ts < s.deleted_before {
                continue;
            }
            s.push(seq, ts, value);
            replayed += 1;
        }
    }
    catalog.head_points = replayed;
    if replayed > 0 {
        tracing::info!(
            points = replayed,
            "replayed unsealed telemetry from the log"
        );
    }
    Ok((catalog, last_seq))
}

/// The size of every recent-log row, by batch number.
fn log_rows(conn: &Connection) -> Result<std::collections::BTreeMap<u64, u64>> {
    let mut q = conn.prepare("SELECT seq, length(body) FROM log")?;
    let rows = q.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(TelemetryError::from)
}

/// The next event id: above every event, and above every purge horizon, so
/// that a new event is never mistaken for a purged one.
fn next_event_id(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT max((SELECT coalesce(max(id), 0) FROM events),
                    (SELECT coalesce(max(last_id), 0) FROM purged_events)) + 1",
        [],
        |r| r.get(0),
    )
    .map_err(TelemetryError::from)
}

fn load_usage(
    conn: &Connection,
    catalog: &Catalog,
    horizons: &purge::Horizons,
) -> Result<HashMap<TenantId, i64>> {
    let mut usage: HashMap<TenantId, i64> = HashMap::new();
    for s in catalog.series.values() {
        *usage.entry(s.tenant.clone()).or_default() += s.head_bytes as i64;
    }
    let mut q =
        conn.prepare("SELECT series, coalesce(sum(length(data)), 0) FROM chunks GROUP BY series")?;
    let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (id, bytes) = row?;
        if let Some(s) = catalog.series.get(&(id as u64)) {
            *usage.entry(s.tenant.clone()).or_default() += bytes;
        }
    }
    let mut q = conn.prepare(
        "SELECT tenant, device, min(id), count(*), coalesce(sum(length(payload) + length(type)), 0)
             FROM events GROUP BY tenant, device",
    )?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    for row in rows {
        let (tenant, device, min_id, mut n, mut bytes) = row?;
        let (Ok(t), Ok(d)) = (TenantId::new(&tenant), DeviceId::new(&device)) else {
            continue;
        };
        let hidden = horizons.of(&t, &d);
        if min_id <= hidden {
            // A purge is still removing some: count only the others.
            (n, bytes) = conn.query_row(
                "SELECT count(*), coalesce(sum(length(payload) + length(type)), 0) FROM events
                     WHERE tenant = ?1 AND device = ?2 AND id > ?3",
                rusqlite::params![tenant, device, hidden],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        }
        *usage.entry(t).or_default() += bytes + n * writer::EVENT_OVERHEAD;
    }
    Ok(usage)
}

/// The `(tenant, bytes)` rows of a budget table (`budgets`, `budget_ceilings`).
fn tenant_bytes(conn: &Connection, table: &str) -> Result<Vec<(TenantId, u64)>> {
    let mut q = conn.prepare(&format!("SELECT tenant, bytes FROM {table}"))?;
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (tenant, bytes) = row?;
        if let Ok(t) = TenantId::new(&tenant) {
            out.push((t, bytes as u64));
        }
    }
    Ok(out)
}

fn load_settings(conn: &Connection) -> Result<HashMap<TenantId, RetentionSettings>> {
    let mut settings: HashMap<TenantId, RetentionSettings> = HashMap::new();
    let mut q = conn.prepare("SELECT tenant, profile, days FROM retention")?;
    let rows = q.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
        ))
    })?;
    for row in rows {
        let (tenant, profile, days) = row?;
        let Ok(t) = TenantId::new(&tenant) else {
            continue;
        };
        let s = settings.entry(t).or_default();
        if profile.is_empty() {
            s.default_days = Some(days);
        } else {
            s.profiles.insert(profile, days);
        }
    }
    for (t, bytes) in tenant_bytes(conn, "budgets")? {
        settings.entry(t).or_default().disk_budget_bytes = Some(bytes);
    }
    for (t, bytes) in tenant_bytes(conn, "budget_ceilings")? {
        settings.entry(t).or_default().disk_budget_ceiling_bytes = Some(bytes);
    }
    Ok(settings)
}

#[async_trait]
impl TelemetryStore for EmbeddedTelemetry {
    fn append(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        readings: Vec<Reading>,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        if readings.is_empty() && events.is_empty() {
            return Ok(Appended {
                ticket: 0,
                backpressure: None,
            });
        }
        let inner = &self.inner;
        if let Some(budget) = inner.budget(tenant)
            && inner.bytes(tenant) >= budget
        {
            return Err(TelemetryError::QuotaExceeded { budget });
        }
        let n = readings.len().max(1);
        let queued = inner.queued_points.fetch_add(n, Ordering::AcqRel) + n;
        // Far beyond the point where publishers were asked to wait: refuse
        // rather than grow without bound.
        if queued > inner.options.max_queued_points * 4 {
            inner.queued_points.fetch_sub(n, Ordering::AcqRel);
            return Err(TelemetryError::Overloaded);
        }
        let ticket = {
            let mut q = inner.queue.lock();
            let Some(tx) = q.tx.clone() else {
                inner.queued_points.fetch_sub(n, Ordering::AcqRel);
                return Err(TelemetryError::Closed);
            };
            q.submitted += 1;
            let ticket = q.submitted;
            // Numbered and queued under one lock: the writer sees appends in
            // number order (and commits each tenant's in that order).
            tx.send(Request::Append {
                ticket,
                tenant: tenant.clone(),
                device: device.clone(),
                readings,
                events,
            })
            .map_err(|_| TelemetryError::Closed)?;
            ticket
        };
        let log_full = inner.log_is_full();
        if log_full {
            observe::IngestSlowed {
                because: observe::SlowedBecause::LogFull,
            }
            .emit();
        }
        Ok(Appended {
            ticket: if inner.options.sync { ticket } else { 0 },
            backpressure: (queued > inner.options.max_queued_points || log_full)
                .then(|| inner.drained.clone()),
        })
    }

    async fn raw(&self, series: SeriesQuery, order: Order, limit: usize) -> Result<Vec<Point>> {
        self.read(move |inner, conn| read::raw(inner, conn, &series, order, limit))
            .await
    }

    async fn aggregate(
        &self,
        series: SeriesQuery,
        interval_ms: i64,
        agg: Agg,
    ) -> Result<Vec<(i64, f64)>> {
        self.read(move |inner, conn| read::aggregate(inner, conn, &series, interval_ms, agg))
            .await
    }

    async fn latest(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        keys: &[String],
    ) -> Result<std::collections::BTreeMap<String, Point>> {
        let (tenant, device, keys) = (tenant.clone(), device.clone(), keys.to_vec());
        self.read(move |inner, conn| read::latest(inner, conn, &tenant, &device, &keys))
            .await
    }

    async fn keys(&self, tenant: &TenantId, device: &DeviceId) -> Result<Vec<String>> {
        Ok(self.inner.catalog.read().keys(tenant, device))
    }

    async fn devices(&self, tenant: &TenantId) -> Result<Vec<DeviceId>> {
        let tenant = tenant.clone();
        self.read(move |inner, conn| read::devices(inner, conn, &tenant))
            .await
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        self.read(move |inner, conn| read::events(inner, conn, &query))
            .await
    }

    fn export(
        &self,
        tenant: &TenantId,
        range: Range,
        sink: &mut dyn FnMut(ExportRecord) -> bool,
    ) -> Result<()> {
        let inner = &self.inner;
        inner.with_reader(|conn| read::export(inner, conn, tenant, range, sink))
    }

    async fn retention(&self, tenant: &TenantId) -> Result<RetentionSettings> {
        Ok(self
            .inner
            .settings
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_default())
    }

    async fn set_retention(&self, tenant: &TenantId, settings: RetentionSettings) -> Result<()> {
        let tenant = tenant.clone();
        self.request(|done| Request::SetRetention {
            tenant,
            settings,
            done,
        })
        .await
    }

    async fn delete_before(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        cutoff: i64,
    ) -> Result<Deleted> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.request(|done| Request::Delete {
            tenant,
            device,
            cutoff,
            done,
        })
        .await
    }

    fn purge(&self, scope: PurgeScope) -> Result<PurgeQueued> {
        let (done, queued) = PurgeQueued::channel();
        // Queued under the lock appends take to number themselves: the
        // writer sees the purge exactly between the appends before and after.
        self.inner.send(Request::Purge { scope, done })?;
        Ok(queued)
    }

    fn disk_bytes(&self, tenant: &TenantId) -> u64 {
        self.inner.bytes(tenant)
    }

    fn busy(&self) -> bool {
        let inner = &self.inner;
        inner.log_is_full()
            || inner.queued_points.load(Ordering::Acquire) > inner.options.max_queued_points
    }

    async fn seal_all(&self) -> Result<()> {
        self.request(Request::SealAll).await
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Later appends are refused; everything queued before is committed
        // and sealed, then the writer stops.
        let Some(tx) = self.inner.queue.lock().tx.take() else {
            return Ok(());
        };
        let (done, rx) = oneshot::channel();
        tx.send(Request::Close(done))
            .map_err(|_| TelemetryError::Closed)?;
        drop(tx);
        let result = rx.await.map_err(|_| TelemetryError::Closed)?;
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::conformance::Subject;

    crate::telemetry_store_conformance!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::default();
        let store =
            EmbeddedTelemetry::open(dir.path(), TelemetryOptions::default(), durability.clone())
                .unwrap();
        // Keep the directory alive as long as the store.
        (
            Subject {
                store: Arc::new(store),
                durability,
            },
            dir,
        )
    });
}

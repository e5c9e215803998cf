//! The storage section of `ferrule bench telemetry`: the realistic series
//! in Ferrule's embedded telemetry store, in this process — disk after
//! sealing and the time of 1-minute averages, measured the way the SQLite
//! baseline is (same series, same query ranges, file size after `VACUUM`,
//! median of runs after a warm-up, results fully read).
//!
//! [`measure`] stores and measures; [`run`] turns that into the section's
//! figures and notes, and [`method`] says how, for the paragraph before the
//! table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ferrule_bus::{Durability, Ledger, Ticket};
use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, FILE, TelemetryOptions};
use ferrule_store::telemetry::{Agg, Range, SeriesQuery, TelemetryStore};

use super::report::{Measure, SectionReport, System, thousands};
use super::signal::{
    MINUTE_MS, QUERY_24H, QUERY_30D, RAW_POINT_BYTES, SERIES_POINTS, SERIES_SEED, T0,
    minute_buckets, realistic_series,
};

/// Readings per append, like a busy device's batch.
const APPEND: usize = 10_000;
/// Longest pause when the store asks its publishers to wait (its writer
/// may drain its queue before this pause starts, so the wake-up can be
/// missed).
pub(crate) const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(50);

/// What the store measured.
#[derive(Debug, Clone)]
pub(super) struct StoreFigures {
    pub(super) points: usize,
    /// Appending every point, waiting for it to be durable, sealing and
    /// closing.
    pub(super) store_time: Duration,
    /// Compressed chunk bytes.
    pub(super) chunk_bytes: u64,
    /// `telemetry.db` after sealing, checkpoint and `VACUUM`.
    pub(super) file_bytes: u64,
    /// The 1-minute averages over the day range and the month range.
    pub(super) day: QueryTime,
    pub(super) month: QueryTime,
}

/// One query's timings, and the buckets it returned (to be checked
/// against the range).
#[derive(Debug, Clone, Copy)]
pub(super) struct QueryTime {
    pub(super) median: Duration,
    pub(super) min: Duration,
    pub(super) buckets: usize,
}

/// The method text for the paragraph before the table.
pub(super) fn method(query_runs: usize) -> String {
    format!(
        "Ferrule's store: in this process, Ferrule's embedded telemetry store (`telemetry.db`, \
         default options, commits durable) fed the realistic series that the SQLite baseline \
         stores (seed {SERIES_SEED}, {} points) as one key of one device, {} readings per \
         append; once all were durable, every head sealed and the store closed; disk = \
         `telemetry.db` after `wal_checkpoint(TRUNCATE)` and `VACUUM`, as for SQLite. Queries: \
         the store reopened, 1-min averages (`aggregate`, `avg`, 60 s buckets, the same ranges \
         as SQLite's: the last 24 h and the 30 days) through the store's API, every bucket \
         returned, median of {query_runs} runs after one warm-up run. ",
        thousands(SERIES_POINTS as f64),
        thousands(APPEND as f64),
    )
}

/// Runs the section in a temp directory: the series that the SQLite
/// baseline stores, then its figures. A query that returns another number
/// of buckets than SQLite's is a failure, and its time is not reported.
pub(super) async fn run(query_runs: usize) -> anyhow::Result<SectionReport> {
    let dir = tempfile::tempdir().context("temp dir for the store")?;
    let series = realistic_series(SERIES_SEED, T0, SERIES_POINTS);
    let figures = measure(
        dir.path(),
        &series,
        to_range(QUERY_24H),
        to_range(QUERY_30D),
        query_runs,
    )
    .await?;
    let mut report = SectionReport::default();
    let points = figures.points as f64;
    let bytes_per_point = figures.file_bytes as f64 / points;
    let chunk_per_point = figures.chunk_bytes as f64 / points;
    report.figure(Measure::DiskBytesPerPoint, System::Ferrule, bytes_per_point);
    report.notes.push(format!(
        "one series: {} points stored durably, sealed and closed in {:.1} s; {} bytes on disk \
         ({bytes_per_point:.2} B/point, {:.2}× raw {RAW_POINT_BYTES} B), of which chunks {} \
         bytes ({chunk_per_point:.2} B/point, {:.2}× raw)",
        thousands(points),
        figures.store_time.as_secs_f64(),
        thousands(figures.file_bytes as f64),
        bytes_per_point / RAW_POINT_BYTES,
        thousands(figures.chunk_bytes as f64),
        chunk_per_point / RAW_POINT_BYTES,
    ));
    let queries = [
        ("24 h", Measure::Avg24h, &figures.day, QUERY_24H),
        ("30 days", Measure::Avg30d, &figures.month, QUERY_30D),
    ];
    for (name, measure, q, range) in queries {
        let (median_ms, min_ms) = (millis(q.median), millis(q.min));
        report.notes.push(format!(
            "1-min averages over {name}: {} buckets, median {median_ms:.2} ms, min {min_ms:.2} ms",
            thousands(q.buckets as f64),
        ));
        // SQLite's query over the range must return this many too.
        let expected = minute_buckets(range);
        if q.buckets == expected {
            report.figure(measure, System::Ferrule, median_ms);
        } else {
            report.failures.push(format!(
                "1-min averages over {name} gave {} buckets, not {} as SQLite's do",
                thousands(q.buckets as f64),
                thousands(expected as f64),
            ));
        }
    }
    Ok(report)
}

fn to_range((from, to): (i64, i64)) -> Range {
    Range { from, to }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn open(dir: &Path) -> anyhow::Result<(Arc<EmbeddedTelemetry>, Durability)> {
    let durability = Durability::default();
    let store = EmbeddedTelemetry::open(dir, TelemetryOptions::default(), durability.clone())
        .context("opening the telemetry store")?;
    Ok((Arc::new(store), durability))
}

/// Stores `series` (sorted, 1 s apart) as one device's key, seals it, and
/// measures disk and the 1-minute averages over `day` and `month` (`runs`
/// timed runs each).
pub(super) async fn measure(
    dir: &Path,
    series: &[(i64, f64)],
    day: Range,
    month: Range,
    runs: usize,
) -> anyhow::Result<StoreFigures> {
    let tenant = TenantId::new("bench")?;
    let device = DeviceId::new("sensor")?;
    let started = Instant::now();
    {
        let (store, durability) = open(dir)?;
        let mut last = 0;
        for piece in series.chunks(APPEND) {
            let readings = piece
                .iter()
                .map(|(ts, v)| Reading {
                    server_stamped: false,
                    ts: *ts,
                    key: "temp".into(),
                    value: TelemetryValue::Number(*v),
                })
                .collect();
            let appended = store.append(&tenant, &device, readings, Vec::new())?;
            last = appended.ticket;
            // Wait when asked to, as a publisher does: the store refuses
            // appends once its queue is far beyond the limit.
            if let Some(drained) = appended.backpressure {
                let _ = tokio::time::timeout(BACKPRESSURE_PAUSE, drained.notified()).await;
            }
        }
        durability.wait(Ticket::on(Ledger::Telemetry, last)).await;
        store.seal_all().await?;
        store.close().await?;
    }
    let store_time = started.elapsed();
    let file_bytes = vacuumed_size(&dir.join(FILE))?;
    let (store, _) = open(dir)?;
    let (chunk_bytes, _) = store.footprint()?;
    let day = time_query(&*store, &tenant, &device, day, runs).await?;
    let month = time_query(&*store, &tenant, &device, month, runs).await?;
    store.close().await?;
    Ok(StoreFigures {
        points: series.len(),
        store_time,
        chunk_bytes,
        file_bytes,
        day,
        month,
    })
}

/// Median and minimum time of `runs` 1-minute-average queries after one
/// warm-up.
async fn time_query(
    store: &dyn TelemetryStore,
    tenant: &TenantId,
    device: &DeviceId,
    range: Range,
    runs: usize,
) -> anyhow::Result<QueryTime> {
    let temp = SeriesQuery::new(tenant, device, "temp", range);
    let mut buckets = store
        .aggregate(temp.clone(), MINUTE_MS, Agg::Avg)
        .await?
        .len();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let got = store.aggregate(temp.clone(), MINUTE_MS, Agg::Avg).await?;
        times.push(t.elapsed());
        buckets = std::hint::black_box(got).len();
    }
    times.sort();
    Ok(QueryTime {
        median: times[times.len() / 2],
        min: times[0],
        buckets,
    })
}

/// The database's size once its WAL is folded in and free pages dropped.
fn vacuumed_size(path: &Path) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
    )?;
    drop(conn);
    Ok(std::fs::metadata(path)?.len())
}

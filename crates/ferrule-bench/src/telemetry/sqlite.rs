//! The baseline of `ferrule bench telemetry`: telemetry stored the plain way
//! a team would start with, SQLite with a row per point, in this process.
//!
//! `points(series, ts, value)` keyed by `(series, ts)` without a rowid, in
//! WAL mode with `synchronous=FULL`, so that every committed transaction is
//! durable as an acknowledged point is in Ferrule; every other setting is
//! SQLite's default. Ingest writes readings as they arrive (time-major,
//! interleaved over all series) in transactions of a fixed number of rows;
//! disk and queries use one realistic series of 30 days in its own database.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, params};

use super::report::{Measure, SectionReport, System, thousands};
use super::signal::{
    DeviceSignal, QUERY_24H, QUERY_30D, RAW_POINT_BYTES, SERIES_POINTS, SERIES_SEED, T0,
    minute_buckets, realistic_series,
};
use super::{DAY_MS, KEYS};
use crate::process::own_cpu_seconds;

const SCHEMA: &str = "CREATE TABLE points(
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY(series, ts)
) WITHOUT ROWID";
const INSERT: &str = "INSERT INTO points(series, ts, value) VALUES (?1, ?2, ?3)";
/// 1-minute averages: bucket number and mean of the points in it.
const MINUTE_AVERAGES: &str = "SELECT (ts - ?1) / 60000 AS b, avg(value) FROM points \
     WHERE series = ?2 AND ts >= ?1 AND ts < ?3 GROUP BY b";
const SERIES_ID: i64 = 1;

/// How the baseline runs.
#[derive(Debug, Clone)]
pub(super) struct Baseline {
    /// Devices of [`KEYS`] series each.
    pub(super) devices: usize,
    /// Rows per transaction.
    pub(super) batch_rows: usize,
    pub(super) warmup: Duration,
    pub(super) measure: Duration,
    /// Timed runs of each query (after one warm-up run).
    pub(super) query_runs: usize,
}

/// The method text for the paragraph before the table.
pub(super) fn method(
    devices: usize,
    batch_rows: usize,
    measure: Duration,
    warmup: Duration,
    query_runs: usize,
) -> String {
    format!(
        "SQLite baseline: SQLite {} (rusqlite, bundled) in this process, \
         `points(series INTEGER, ts INTEGER, value REAL, PRIMARY KEY(series, ts)) WITHOUT ROWID`, \
         WAL, `synchronous=FULL` (each commit durable), other settings default (page cache \
         2 MiB). Ingest: {} series ({} devices × {KEYS} keys, the same signal as the \
         devices above), rows time-major as readings arrive, {} rows per transaction \
         through a prepared statement; points/s = rows committed ÷ time inside the \
         transactions over a {} s window after a {} s warm-up, starting from an empty table. \
         No parsing and no network: a lenient baseline for Ferrule's end-to-end figures. \
         Disk: one realistic series (room temperature at 0.1 °C resolution, every 1000 ms ± \
         5 ms, 30 days = {} points; `realistic_series`, as `ferrule-bench/examples/tsdb.rs`) \
         in its own database, file size after `VACUUM` and `wal_checkpoint(TRUNCATE)`. \
         Queries on it: `SELECT (ts - from) / 60000 AS b, avg(value) … GROUP BY b` over the \
         last 24 h and over the 30 days, every row read, median of {query_runs} runs after one \
         warm-up run. ",
        rusqlite::version(),
        thousands((devices * KEYS) as f64),
        thousands(devices as f64),
        thousands(batch_rows as f64),
        measure.as_secs(),
        warmup.as_secs(),
        thousands(SERIES_POINTS as f64),
    )
}

/// Runs the baseline in a temp directory: ingest, then disk and queries.
pub(super) fn run(cfg: &Baseline) -> anyhow::Result<SectionReport> {
    let dir = tempfile::tempdir().context("temp dir for SQLite")?;
    let mut report = SectionReport::default();
    let ingest = ingest(&dir.path().join("ingest.db"), cfg)?;
    // One in-process ingest rate is the baseline of both of Ferrule's
    // ingest paths.
    for measure in [Measure::IngestMqtt, Measure::IngestHttp] {
        report.figure(measure, System::Sqlite, ingest.points_per_sec);
    }
    report.notes.push(format!(
        "ingest: {} rows committed in the window ({} transactions, {:.2} s inside them); \
         {} rows, {:.1} MiB at the end; bench CPU {:.2} cores over the whole ingest",
        thousands(ingest.window_rows as f64),
        ingest.window_batches,
        ingest.window_secs,
        thousands(ingest.total_rows as f64),
        ingest.file_bytes as f64 / (1 << 20) as f64,
        ingest.cpu_cores,
    ));

    let series = one_series(&dir.path().join("series.db"), cfg)?;
    report.figure(
        Measure::DiskBytesPerPoint,
        System::Sqlite,
        series.bytes_per_point,
    );
    report.figure(Measure::Avg24h, System::Sqlite, series.day.median_ms);
    report.figure(Measure::Avg30d, System::Sqlite, series.month.median_ms);
    report.notes.push(format!(
        "one series: {} points inserted in {:.1} s; {} bytes on disk ({:.2} B/point, {:.2}× \
         raw {RAW_POINT_BYTES} B)",
        thousands(SERIES_POINTS as f64),
        series.insert_secs,
        thousands(series.file_bytes as f64),
        series.bytes_per_point,
        series.bytes_per_point / RAW_POINT_BYTES,
    ));
    for (name, q) in [("24 h", &series.day), ("30 days", &series.month)] {
        report.notes.push(format!(
            "1-min averages over {name}: {} buckets, median {:.2} ms, min {:.2} ms",
            thousands(q.buckets as f64),
            q.median_ms,
            q.min_ms
        ));
    }
    Ok(report)
}

/// A fresh database with the schema, WAL and `synchronous=FULL` (checked,
/// since a pragma SQLite does not understand is silently ignored).
fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("SQLite refused WAL mode (journal_mode is {mode})");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    if synchronous != 2 {
        bail!("SQLite refused synchronous=FULL (it is {synchronous})");
    }
    conn.execute_batch(SCHEMA)
        .context("creating the points table")?;
    Ok(conn)
}

/// One transaction of rows `(series, ts, value)`.
fn insert_batch(conn: &mut Connection, rows: &[(i64, i64, f64)]) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for &(series, ts, value) in rows {
            insert.execute(params![series, ts, value])?;
        }
    }
    tx.commit().context("committing a batch")
}

/// What the ingest measured.
struct Ingest {
    points_per_sec: f64,
    window_rows: u64,
    window_batches: u64,
    window_secs: f64,
    total_rows: u64,
    file_bytes: u64,
    cpu_cores: f64,
}

/// Readings of every device in arrival order: each device's next reading
/// in turn, a row per key, series `device × KEYS + key`.
struct Arrivals {
    signals: Vec<DeviceSignal>,
    next_device: usize,
}

impl Arrivals {
    fn new(devices: usize) -> Self {
        let end = T0 + DAY_MS;
        Arrivals {
            signals: (0..devices)
                .map(|d| DeviceSignal::new(d as u64, T0, end))
                .collect(),
            next_device: 0,
        }
    }

    /// Fills `batch` with the next `n` rows.
    fn fill(&mut self, batch: &mut Vec<(i64, i64, f64)>, n: usize) -> anyhow::Result<()> {
        batch.clear();
        while batch.len() < n {
            let device = self.next_device;
            let (ts, values) = self.signals[device].next_reading()?;
            let base = i64::try_from(device * KEYS)?;
            for (k, v) in values.into_iter().enumerate() {
                batch.push((base + i64::try_from(k)?, ts, v));
            }
            self.next_device = (device + 1) % self.signals.len();
        }
        // A reading is not split over two transactions, so a batch may be
        // up to KEYS - 1 rows longer than asked; the counts use its length.
        Ok(())
    }
}

/// Inserts readings for `warmup + measure` of wall time; the rate is rows
/// committed in the window over the time spent inside their transactions
/// (generating the rows is left out).
fn ingest(path: &Path, cfg: &Baseline) -> anyhow::Result<Ingest> {
    let mut conn = open(path)?;
    let mut arrivals = Arrivals::new(cfg.devices);
    let mut batch = Vec::with_capacity(cfg.batch_rows + KEYS);
    let cpu_start = own_cpu_seconds()?;
    let started = Instant::now();
    let (mut window_rows, mut window_batches, mut total_rows) = (0u64, 0u64, 0u64);
    let mut inside = Duration::ZERO;
    while started.elapsed() < cfg.warmup + cfg.measure {
        arrivals.fill(&mut batch, cfg.batch_rows)?;
        let t = Instant::now();
        insert_batch(&mut conn, &batch)?;
        let spent = t.elapsed();
        total_rows += batch.len() as u64;
        if t.duration_since(started) >= cfg.warmup {
            inside += spent;
            window_rows += batch.len() as u64;
            window_batches += 1;
        }
    }
    let cpu_cores = (own_cpu_seconds()? - cpu_start) / started.elapsed().as_secs_f64();
    drop(conn);
    if window_batches == 0 {
        bail!("no SQLite transaction finished inside the measurement window");
    }
    Ok(Ingest {
        points_per_sec: window_rows as f64 / inside.as_secs_f64(),
        window_rows,
        window_batches,
        window_secs: inside.as_secs_f64(),
        total_rows,
        file_bytes: database_bytes(path)?,
        cpu_cores,
    })
}

/// The database file plus its WAL, if any.
fn database_bytes(path: &Path) -> anyhow::Result<u64> {
    let main = std::fs::metadata(path)
        .with_context(|| format!("size of {}", path.display()))?
        .len();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(&wal).map_or(0, |m| m.len());
    Ok(main + wal)
}

/// What the one-series database measured.
struct OneSeries {
    insert_secs: f64,
    file_bytes: u64,
    bytes_per_point: f64,
    day: QueryTime,
    month: QueryTime,
}

struct QueryTime {
    median_ms: f64,
    min_ms: f64,
    buckets: usize,
}

/// The realistic 30-day series in a database of its own: its size once
/// compacted, and the two 1-minute-average queries.
fn one_series(path: &Path, cfg: &Baseline) -> anyhow::Result<OneSeries> {
    let points = realistic_series(SERIES_SEED, T0, SERIES_POINTS);
    let mut conn = open(path)?;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(cfg.batch_rows);
    for chunk in points.chunks(cfg.batch_rows.max(1)) {
        batch.clear();
        batch.extend(chunk.iter().map(|&(ts, v)| (SERIES_ID, ts, v)));
        insert_batch(&mut conn, &batch)?;
    }
    let insert_secs = started.elapsed().as_secs_f64();
    // Compact, then fold the WAL back into the main file and empty it, so
    // the file size is the data's, as "after sealing" is for Ferrule.
    conn.execute_batch("VACUUM").context("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .context("checkpointing the WAL")?;
    let file_bytes = database_bytes(path)?;

    let day = time_query(&conn, QUERY_24H, cfg.query_runs)?;
    let month = time_query(&conn, QUERY_30D, cfg.query_runs)?;
    Ok(OneSeries {
        insert_secs,
        file_bytes,
        bytes_per_point: file_bytes as f64 / SERIES_POINTS as f64,
        day,
        month,
    })
}

/// Median and minimum of `runs` timed runs of the 1-minute averages over
/// `[from, to)`, after one untimed run.
fn time_query(conn: &Connection, (from, to): (i64, i64), runs: usize) -> anyhow::Result<QueryTime> {
    let buckets = minute_averages(conn, from, to)?;
    let expected = minute_buckets((from, to));
    if buckets != expected {
        bail!("1-min averages over [{from}, {to}) gave {buckets} buckets, not {expected}");
    }
    let mut times: Vec<f64> = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        minute_averages(conn, from, to)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(QueryTime {
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        buckets,
    })
}

/// Runs the query and reads every row; returns the number of buckets.
fn minute_averages(conn: &Connection, from: i64, to: i64) -> anyhow::Result<usize> {
    let mut query = conn.prepare_cached(MINUTE_AVERAGES)?;
    let rows = query.query_map(params![from, SERIES_ID, to], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
    })?;
    let mut buckets = 0;
    for row in rows {
        black_box(row?);
        buckets += 1;
    }
    Ok(buckets)
}

//! `ferrule bench backup`: how fast `ferrule backup` and `ferrule restore`
//! move a data directory holding many points (100 M by default), beside
//! SQLite's own `sqlite3 DB ".backup FILE"` and `".restore FILE"` of the same
//! two database files, in the same run.
//!
//! [`fill`] writes the data directory through Ferrule's stores; each timed
//! run then backs it up and restores it with both tools, as processes a user
//! would start, and checks that every restored copy holds every point.

mod fill;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ferrule_store::telemetry::embedded::counts::stored_points;

use crate::launch::server_binary;
use crate::thousands;
use fill::Shape;

/// The two files a data directory's state lives in.
const DATABASES: [&str; 2] = ["meta.db", "telemetry.db"];

#[derive(Debug, Args)]
pub struct BackupBenchArgs {
    /// Points in the data directory (at least; rounded up to whole series).
    #[arg(long, default_value_t = 100_000_000)]
    pub points: u64,
    /// Devices the points come from.
    #[arg(long, default_value_t = 1_000)]
    pub devices: usize,
    /// Series (keys) per device, each a point a second.
    #[arg(long, default_value_t = 10)]
    pub keys: usize,
    /// Timed runs of each tool; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where the data directory, the backups and the restored copies go
    /// [default: the system's temp dir]. Needs about four times the data
    /// directory's size free; removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Time this data directory instead of a new one (its WAL is folded
    /// in first); one that does not exist yet is filled as the other
    /// options say, and kept for the next run.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// One tool's timed runs.
#[derive(Debug, Default)]
struct Timings {
    backup: Vec<Duration>,
    restore: Vec<Duration>,
    /// Bytes of the backup (the archive, or the two copies).
    backup_bytes: u64,
}

impl Timings {
    fn median(times: &[Duration]) -> Duration {
        let mut sorted = times.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    }
}

pub fn main(args: BackupBenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.devices == 0 || args.keys == 0 {
        bail!("--runs, --devices and --keys must be at least 1");
    }
    let sqlite3 = which_sqlite3()?;
    let ferrule = server_binary()?;
    let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("ferrule-bench-backup-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a work directory in {}", base.display()))?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| work.path().join("data"));
    let mut shape = Shape::for_points(args.points, args.devices, args.keys);
    let fill_time = if data.join("meta.db").exists() {
        eprintln!("timing the data directory {} as it is …", data.display());
        None
    } else {
        eprintln!(
            "writing {} points ({} devices × {} keys × {} s) into {} …",
            thousands(shape.points() as f64),
            shape.devices,
            shape.keys,
            shape.seconds,
            data.display()
        );
        let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
        Some(runtime.block_on(fill::fill(&data, shape))?)
    };
    let points = fold_wal_and_count(&data)?;
    if fill_time.is_none() {
        shape = Shape::existing(points);
    } else if points != shape.points() {
        bail!(
            "the store holds {points} points after filling, not {}",
            shape.points()
        );
    }
    let data_bytes = databases_bytes(&data)?;
    eprintln!(
        "{} bytes of databases; timing {} runs of each tool …",
        thousands(data_bytes as f64),
        args.runs
    );

    let mut ferrule_runs = Timings::default();
    let mut sqlite_runs = Timings::default();
    for run in 0..args.runs {
        let dir = work.path().join(format!("run-{run}"));
        std::fs::create_dir(&dir)?;
        ferrule_once(&ferrule, &data, &dir, points, &mut ferrule_runs)?;
        sqlite_once(&sqlite3, &data, &dir, points, &mut sqlite_runs)?;
        std::fs::remove_dir_all(&dir)?;
        eprintln!("run {} of {} done", run + 1, args.runs);
    }

    print_report(&Report {
        shape,
        points,
        data_bytes,
        free_bytes: free_bytes(&data)?,
        fill_time,
        runs: args.runs,
        sqlite_version: sqlite_version(&sqlite3)?,
        ferrule: ferrule_runs,
        sqlite: sqlite_runs,
    });
    Ok(())
}

/// `ferrule backup` then `ferrule restore` of `data`, inside `dir`.
fn ferrule_once(
    ferrule: &Path,
    data: &Path,
    dir: &Path,
    points: u64,
    timings: &mut Timings,
) -> anyhow::Result<()> {
    let archive = dir.join("data.ferrule-backup");
    let restored = dir.join("ferrule-restored");
    let mut backup = std::process::Command::new(ferrule);
    backup
        .arg("backup")
        .arg(&archive)
        .arg("--data-dir")
        .arg(data);
    timings.backup.push(timed(&mut backup, "ferrule backup")?);
    timings.backup_bytes = std::fs::metadata(&archive)?.len();
    let mut restore = std::process::Command::new(ferrule);
    restore
        .arg("restore")
        .arg(&archive)
        .arg("--data-dir")
        .arg(&restored);
    timings
        .restore
        .push(timed(&mut restore, "ferrule restore")?);
    check_restored(&restored, points, "ferrule restore")
}

/// `sqlite3 DB ".backup COPY"` of both databases, then `sqlite3 NEW
/// ".restore COPY"` of both, inside `dir`: one file after the other, as a
/// script would.
fn sqlite_once(
    sqlite3: &Path,
    data: &Path,
    dir: &Path,
    points: u64,
    timings: &mut Timings,
) -> anyhow::Result<()> {
    let copies = dir.join("sqlite-backup");
    let restored = dir.join("sqlite-restored");
    std::fs::create_dir(&copies)?;
    std::fs::create_dir(&restored)?;
    let mut backup = Duration::ZERO;
    let mut restore = Duration::ZERO;
    let mut bytes = 0;
    for db in DATABASES {
        let copy = copies.join(db);
        let mut cmd = std::process::Command::new(sqlite3);
        cmd.arg(data.join(db))
            .arg(format!(".backup '{}'", copy.display()));
        backup += timed(&mut cmd, "sqlite3 .backup")?;
        bytes += std::fs::metadata(&copy)?.len();
    }
    for db in DATABASES {
        let mut cmd = std::process::Command::new(sqlite3);
        cmd.arg(restored.join(db))
            .arg(format!(".restore '{}'", copies.join(db).display()));
        restore += timed(&mut cmd, "sqlite3 .restore")?;
    }
    timings.backup.push(backup);
    timings.restore.push(restore);
    timings.backup_bytes = bytes;
    check_restored(&restored, points, "sqlite3 .restore")
}

/// Runs `cmd` to completion and returns its wall time; a failure is the
/// bench's failure, with what the tool printed.
fn timed(cmd: &mut std::process::Command, what: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {what}"))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}

/// A restore that lost points is a failure, not a figure.
fn check_restored(dir: &Path, points: u64, what: &str) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("telemetry.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .with_context(|| format!("opening what {what} wrote"))?;
    let got = stored_points(&conn)?;
    if got != points {
        bail!("{what} gave back {got} points of {points}");
    }
    Ok(())
}

/// Folds each database's WAL into it, so `sqlite3` and Ferrule copy the
/// same bytes, and counts the stored points.
fn fold_wal_and_count(data: &Path) -> anyhow::Result<u64> {
    let mut points = 0;
    for db in DATABASES {
        let conn = rusqlite::Connection::open(data.join(db))?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        if db == "telemetry.db" {
            points = stored_points(&conn)?;
        }
    }
    Ok(points)
}

fn databases_bytes(data: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for db in DATABASES {
        bytes += std::fs::metadata(data.join(db))?.len();
    }
    Ok(bytes)
}

fn free_bytes(data: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for db in DATABASES {
        let conn = rusqlite::Connection::open_with_flags(
            data.join(db),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let pages: u64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
        let size: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        bytes += pages * size;
    }
    Ok(bytes)
}

fn which_sqlite3() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from("sqlite3");
    std::process::Command::new(&path)
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| path)
        .context("the baseline needs the sqlite3 command-line shell (apt-get install sqlite3)")
}

fn sqlite_version(sqlite3: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(sqlite3)
        .arg("-version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("?").to_owned())
}

struct Report {
    shape: Shape,
    points: u64,
    data_bytes: u64,
    /// Of `data_bytes`, pages on SQLite's free lists.
    free_bytes: u64,
    /// `None` for a data directory the bench did not write.
    fill_time: Option<Duration>,
    runs: usize,
    sqlite_version: String,
    ferrule: Timings,
    sqlite: Timings,
}

fn print_report(r: &Report) {
    let mb = r.data_bytes as f64 / 1e6;
    let points = r.points as f64;
    println!("Machine: {}", crate::machine());
    let origin = match (r.fill_time, r.shape.existing) {
        (Some(t), _) => format!(
            "{} points ({} devices × {} keys, 1 s apart for {} s, realistic signal), written \
             through Ferrule's stores in {:.0} s and sealed",
            thousands(points),
            r.shape.devices,
            r.shape.keys,
            r.shape.seconds,
            t.as_secs_f64()
        ),
        _ => format!("an existing one holding {} points", thousands(points)),
    };
    println!(
        "Data directory: {origin}; meta.db + telemetry.db = {mb:.1} MB, of which {:.1} MB \
         free pages (SQLite keeps the space of sealed points' log rows for reuse; both tools \
         copy it). Each of {} runs: `ferrule backup FILE --data-dir DIR`, `ferrule restore \
         FILE --data-dir NEW`, then `sqlite3 DB \".backup COPY\"` and `sqlite3 NEW \".restore \
         COPY\"` (SQLite {}) of both files one after the other; every restored copy checked to \
         hold every point. Rates are the data directory's bytes and points over the median \
         wall time, page cache warm.",
        r.free_bytes as f64 / 1e6,
        r.runs,
        r.sqlite_version,
    );
    println!();
    println!("| measure | ferrule | sqlite3 | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    let rows = [
        ("backup", &r.ferrule.backup, &r.sqlite.backup),
        ("restore", &r.ferrule.restore, &r.sqlite.restore),
    ];
    for (name, ferrule, sqlite) in rows {
        let f = Timings::median(ferrule).as_secs_f64();
        let s = Timings::median(sqlite).as_secs_f64();
        println!(
            "| {name}, s (median of {}) | {f:.2} | {s:.2} | {:.2}× |",
            r.runs,
            f / s
        );
        println!(
            "| {name}, MB/s | {:.0} | {:.0} | {:.2}× |",
            mb / f,
            mb / s,
            s / f
        );
        println!(
            "| {name}, points/s | {} | {} | {:.2}× |",
            thousands(points / f),
            thousands(points / s),
            s / f
        );
    }
    println!(
        "| backup size, MB | {:.1} (one compressed, checksummed file) | {:.1} (two database copies) | {:.2}× |",
        r.ferrule.backup_bytes as f64 / 1e6,
        r.sqlite.backup_bytes as f64 / 1e6,
        r.ferrule.backup_bytes as f64 / r.sqlite.backup_bytes as f64
    );
}

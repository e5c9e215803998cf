//! `ferrule check`: the preflight of a data directory before an upgrade or
//! a move. It reports the schema versions found against this binary's, the
//! migrations `serve` would run, the disk space they need (the automatic
//! backup beside the data directory, then the migration itself) against
//! what is free, and SQLite's integrity check of both databases.
//!
//! It only reads (`query_only`), takes no lock, and holds each read
//! transaction only for its check, so it is safe beside a running server.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use ferrule_store::backup::Progress;
use ferrule_store::embedded::{self, META_DB};
use ferrule_store::telemetry::embedded as telemetry;
use rusqlite::{Connection, OpenFlags};

use crate::cli::CheckArgs;
use crate::progress::Reporter;

pub fn main(args: CheckArgs) -> ExitCode {
    let config = match crate::backup::load_config(
        args.config.as_deref(),
        args.data_dir.clone(),
        args.log_format,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let progress = Reporter::for_stderr(config.log_format);
    let report = check(&config.data_dir, args.full, &progress);
    print!("{}", report.text);
    if report.problems.is_empty() {
        println!("result:       ok");
        ExitCode::SUCCESS
    } else {
        println!("result:       {} problem(s)", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
        ExitCode::FAILURE
    }
}

/// What a check found: the lines to print and the problems among them.
#[derive(Debug, Default)]
pub struct Report {
    pub text: String,
    pub problems: Vec<String>,
}

/// One database's state.
struct Found {
    version: u32,
    current: u32,
    pending: Vec<String>,
    bytes: u64,
}

pub fn check(dir: &Path, full: bool, progress: &dyn Progress) -> Report {
    let mut r = Report::default();
    let _ = writeln!(r.text, "data dir:     {}", dir.display());
    let meta_path = dir.join(META_DB);
    if !meta_path.is_file() {
        r.problems.push(format!(
            "{} holds no Ferrule data (no {META_DB}): check --data-dir; `ferrule serve` creates a new data directory",
            dir.display()
        ));
        return r;
    }
    let meta = inspect(
        &mut r,
        &meta_path,
        embedded::SCHEMA_VERSION,
        embedded::pending_migrations,
        full,
        progress,
    );
    let telemetry_path = dir.join(telemetry::FILE);
    let tel = if telemetry_path.is_file() {
        inspect(
            &mut r,
            &telemetry_path,
            telemetry::SCHEMA_VERSION,
            |v| telemetry::pending_migrations(i64::from(v)),
            full,
            progress,
        )
    } else {
        let _ = writeln!(r.text, "{}: none yet (serve creates it)", telemetry::FILE);
        None
    };
    let migrating: Vec<&Found> = [&meta, &tel]
        .into_iter()
        .flatten()
        .filter(|f| !f.pending.is_empty())
        .collect();
    if migrating.is_empty() {
        let _ = writeln!(r.text, "disk:         no migration needed");
    } else {
        disk_space(&mut r, dir, &meta, &tel, &migrating);
    }
    r
}

fn inspect(
    r: &mut Report,
    path: &Path,
    current: u32,
    pending_of: impl Fn(u32) -> Vec<String>,
    full: bool,
    progress: &dyn Progress,
) -> Option<Found> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = db_bytes(path);
    let conn = match open_read_only(path) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(format!(
                "{name} cannot be opened ({e}): restore it from a backup"
            ));
            return None;
        }
    };
    let version = match conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0)) {
        Ok(v) => v,
        Err(e) => {
            r.problems.push(format!(
                "{name} is not a readable SQLite database ({e}): restore it from a backup"
            ));
            return None;
        }
    };
    let pending = if version > current {
        Vec::new()
    } else {
        pending_of(version)
    };
    let state = if version > current {
        r.problems.push(format!(
            "{name} has schema version {version}, newer than this binary's {current}: it was \
             written by a newer release; run that release (or newer)"
        ));
        "newer than this binary".to_string()
    } else if pending.is_empty() {
        "current".to_string()
    } else {
        format!("{} migration(s) to run", pending.len())
    };
    let _ = writeln!(
        r.text,
        "{name:<13} schema {version}, this binary {current}: {state} ({})",
        human(bytes)
    );
    for m in &pending {
        let _ = writeln!(r.text, "  will run    {m}");
    }
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    progress.start(&format!("{pragma} {name}"), 0);
    let verdict = integrity(&conn, pragma);
    progress.finish();
    match verdict {
        Ok(()) => {
            let _ = writeln!(r.text, "  {pragma}: ok");
        }
        Err(what) => {
            let _ = writeln!(r.text, "  {pragma}: FAILED");
            r.problems.push(format!(
                "{name} fails {pragma}: {what}; restore it from a backup"
            ));
        }
    }
    Some(Found {
        version,
        current,
        pending,
        bytes,
    })
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    // Read-write without create: a read-only handle cannot recover a WAL
    // left by a stopped server, and `query_only` keeps us from writing.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// `Ok` when SQLite says "ok"; else its first findings.
fn integrity(conn: &Connection, pragma: &str) -> Result<(), String> {
    let rows: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA {pragma}(20)"))
        .and_then(|mut q| q.query_map([], |row| row.get(0))?.collect());
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(rows.into_iter().take(3).collect::<Vec<_>>().join("; ")),
        Err(e) => Err(e.to_string()),
    }
}

/// The database with its WAL: what a snapshot copies.
fn db_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

/// Space a migration at `serve` start needs: the automatic backup (its
/// scratch copies, then the archive, at most as big again) beside the data
/// directory, and room for SQLite to rewrite the migrated database.
fn disk_space(
    r: &mut Report,
    dir: &Path,
    meta: &Option<Found>,
    tel: &Option<Found>,
    migrating: &[&Found],
) {
    let all: u64 = [meta, tel].into_iter().flatten().map(|f| f.bytes).sum();
    let migration: u64 = migrating.iter().map(|f| f.bytes).sum();
    let needed = 2 * all + migration;
    let versions = migrating
        .iter()
        .map(|f| format!("{}→{}", f.version, f.current))
        .collect::<Vec<_>>()
        .join(", ");
    let free = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available() * s.fragment_size(),
        Err(e) => {
            r.problems.push(format!(
                "cannot read the free space of {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    let _ = writeln!(
        r.text,
        "disk:         migration ({versions}) needs {} (automatic backup {} + migration {}), {} free",
        human(needed),
        human(2 * all),
        human(migration),
        human(free)
    );
    if free < needed {
        r.problems.push(format!(
            "the migration needs {} free beside {}, only {} is: free some space first",
            human(needed),
            dir.display(),
            human(free)
        ));
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

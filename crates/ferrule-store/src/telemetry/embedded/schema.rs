//! The telemetry database: one SQLite file, `telemetry.db`, beside the
//! metadata store (its own file, so ingest never waits on metadata writes).
//!
//! - `series`: one row per (tenant, device, key, kind). `sealed_seq` is the
//!   last log batch whose points of this series are in chunks, and
//!   `deleted_before` the retention horizon: replaying the log after a crash
//!   skips what either already covers, so nothing comes back twice.
//! - `log`: the durable recent log, one row per committed batch (see
//!   `logbody`); rows go once every series has sealed their points.
//! - `chunks`: compressed per-series chunks (`ferrule-tsdb` format), never
//!   overlapping in time within a series.
//! - `events`, `retention`, `budgets`: what their names say.

use rusqlite::Connection;

/// Schema version kept in `user_version`.
pub const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    sealed_seq INTEGER NOT NULL DEFAULT 0,
    deleted_before INTEGER NOT NULL DEFAULT -9223372036854775808,
    UNIQUE (tenant, device, key, kind)
);
CREATE TABLE log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    series INTEGER NOT NULL,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    points INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX chunks_by_series ON chunks (series, min_ts);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    ts INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX events_by_device ON events (tenant, device, ts);
CREATE TABLE retention (
    tenant TEXT NOT NULL,
    profile TEXT NOT NULL,
    days INTEGER NOT NULL,
    PRIMARY KEY (tenant, profile)
);
CREATE TABLE budgets (tenant TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
";

/// Pragmas for every connection; `sync` chooses whether a commit waits for
/// the disk (`durability = "sync"`).
pub fn configure(conn: &Connection, sync: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Creates the schema on an empty database; refuses one from a newer binary.
pub fn migrate(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > VERSION {
        return Err(format!(
            "telemetry.db has schema version {version}, newer than this binary's {VERSION}: \
             run a newer ferrule"
        ));
    }
    if version == VERSION {
        return Ok(());
    }
    // Incremental auto-vacuum lets retention give disk space back.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(|e| e.to_string())?;
    conn.execute_batch(&format!(
        "BEGIN; {SCHEMA} PRAGMA user_version = {VERSION}; COMMIT;"
    ))
    .map_err(|e| e.to_string())
}

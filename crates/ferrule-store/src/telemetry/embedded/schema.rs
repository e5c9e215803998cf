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
//! - `purged_series`, `purged_events` (version 2): what deleted devices and
//!   tenants left behind, already invisible to readers and removed in the
//!   background (see `purge`). A purged series keeps its kind so that log
//!   batches still holding its points can be decoded, and skipped, until
//!   they are trimmed; `last_seq` is the last batch that can hold them.
//!   Events of a scope (a tenant, device `''`, or one device) with an id up
//!   to `last_id` are purged.
//! - `budget_ceilings` (version 3): disk budgets a server admin set, which
//!   the tenant's owner cannot lift; `budgets` holds the owner's own (lower)
//!   ones. Budgets from before version 3 could have been set by an admin, so
//!   they become ceilings.

use rusqlite::Connection;

use crate::telemetry::{Result, TelemetryError};

/// Schema version kept in `user_version`.
pub const VERSION: i64 = 3;

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

/// Version 1 → 2: purges of deleted devices and tenants.
const PURGES: &str = "
CREATE TABLE purged_series (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE TABLE purged_events (
    tenant TEXT NOT NULL,
    device TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (tenant, device)
);
";

/// Version 2 → 3: admins' disk budgets are ceilings.
const CEILINGS: &str = "
CREATE TABLE budget_ceilings (tenant TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
";

/// What an older database had as budgets becomes ceilings.
const CEILINGS_FROM_BUDGETS: &str = "
INSERT INTO budget_ceilings (tenant, bytes) SELECT tenant, bytes FROM budgets;
DELETE FROM budgets;
";

/// What upgrading from version `found` does, one line per version step
/// (`ferrule check` shows them before an upgrade).
pub fn pending_migrations(found: i64) -> Vec<String> {
    [
        (1, "1: series, log, chunks, events, retention and budgets"),
        (2, "2: purges of deleted devices and tenants"),
        (3, "3: admins' disk budgets become ceilings"),
    ]
    .into_iter()
    .filter(|(v, _)| *v > found)
    .map(|(_, what)| what.to_string())
    .collect()
}

/// Pragmas for every connection; `sync` chooses whether a commit waits for
/// the disk (`durability = "sync"`).
pub fn configure(conn: &Connection, sync: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Creates the schema on an empty database, upgrades an older one in place;
/// refuses one from a newer binary.
pub fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > VERSION {
        return Err(TelemetryError::storage(format!(
            "telemetry.db has schema version {version}, newer than this binary's {VERSION}: \
             run a newer ferrule"
        )));
    }
    if version == VERSION {
        return Ok(());
    }
    let steps = if version == 0 {
        // Incremental auto-vacuum lets retention give disk space back; it
        // can only be chosen before the first table exists.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        format!("{SCHEMA}{PURGES}{CEILINGS}")
    } else if version == 1 {
        format!("{PURGES}{CEILINGS}{CEILINGS_FROM_BUDGETS}")
    } else {
        format!("{CEILINGS}{CEILINGS_FROM_BUDGETS}")
    };
    conn.execute_batch(&format!(
        "BEGIN; {steps} PRAGMA user_version = {VERSION}; COMMIT;"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_is_upgraded_in_place() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA} PRAGMA user_version = 1;"))
            .unwrap();
        conn.execute("INSERT INTO log (seq, body) VALUES (1, x'00')", [])
            .unwrap();
        migrate(&conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, VERSION);
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        conn.execute("INSERT INTO purged_series VALUES (1, 1, 1)", [])
            .unwrap();
        migrate(&conn).unwrap();
    }

    #[test]
    fn a_version_2_budget_becomes_a_ceiling() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA}{PURGES} PRAGMA user_version = 2;"))
            .unwrap();
        conn.execute("INSERT INTO budgets VALUES ('t', 1000)", [])
            .unwrap();
        migrate(&conn).unwrap();
        let ceiling: i64 = conn
            .query_row(
                "SELECT bytes FROM budget_ceilings WHERE tenant = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ceiling, 1000);
        let own: i64 = conn
            .query_row("SELECT count(*) FROM budgets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(own, 0);
    }

    #[test]
    fn every_version_step_is_described() {
        assert_eq!(pending_migrations(0).len() as i64, VERSION);
        assert_eq!(pending_migrations(1).len(), 2);
        assert!(pending_migrations(VERSION).is_empty());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(migrate(&conn).unwrap_err().to_string().contains("newer"));
    }
}

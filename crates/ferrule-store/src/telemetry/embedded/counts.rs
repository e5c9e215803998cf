//! Counting what a `telemetry.db` holds without opening it as a store (for
//! backup manifests and `ferrule check`).

use std::collections::HashMap;

use rusqlite::Connection;

use super::{kind_from_code, logbody};

/// Points readers would see: those in chunks, plus those in the recent
/// log that no chunk holds yet. Expired points not yet trimmed count too:
/// this is what the file holds, not what a query returns.
pub fn stored_points(conn: &Connection) -> rusqlite::Result<u64> {
    let in_chunks: i64 =
        conn.query_row("SELECT coalesce(sum(points), 0) FROM chunks", [], |r| {
            r.get(0)
        })?;
    let mut series = HashMap::new();
    let mut q = conn.prepare("SELECT id, kind, sealed_seq FROM series")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        if let Some(kind) = kind_from_code(r.get(1)?) {
            series.insert(
                r.get::<_, i64>(0)? as u64,
                (kind, r.get::<_, i64>(2)? as u64),
            );
        }
    }
    let mut purged = HashMap::new();
    let has_purges: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'purged_series'",
        [],
        |r| r.get(0),
    )?;
    if has_purges {
        let mut q = conn.prepare("SELECT id, kind FROM purged_series")?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            if let Some(kind) = kind_from_code(r.get(1)?) {
                purged.insert(r.get::<_, i64>(0)? as u64, kind);
            }
        }
    }
    let mut in_log = 0u64;
    let mut q = conn.prepare("SELECT seq, body FROM log")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let seq = r.get::<_, i64>(0)? as u64;
        let body: Vec<u8> = r.get(1)?;
        let kind_of = |id| {
            series
                .get(&id)
                .map(|(kind, _)| *kind)
                .or_else(|| purged.get(&id).copied())
        };
        // A malformed batch is for the integrity check to report; it holds
        // nothing readable.
        let Some(points) = logbody::points(&body, kind_of) else {
            continue;
        };
        in_log += points
            .iter()
            .filter(|(id, _, _)| series.get(id).is_some_and(|(_, sealed)| seq > *sealed))
            .count() as u64;
    }
    Ok(in_chunks as u64 + in_log)
}

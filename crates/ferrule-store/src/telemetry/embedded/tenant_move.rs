//! A tenant's telemetry out of a snapshot of `telemetry.db`, and into a
//! running store (see `crate::tenant_move`).
//!
//! Series ids are the store's own numbering, so the imported series get
//! new ones above every id the target has used; their chunks follow by a
//! map from old to new id. The recent log's batches mix tenants: the
//! extract keeps each batch with only the tenant's points, and the import
//! writes the points not yet sealed as one new batch of the target's log,
//! into the new series' heads, exactly as if they had just arrived.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ferrule_core::telemetry::TelemetryValue;
use ferrule_core::{DeviceId, TenantId};
use ferrule_tsdb::Kind;
use rusqlite::{Connection, params};

use super::catalog::{Series, SeriesId, point_cost};
use super::writer::{EVENT_OVERHEAD, Writer};
use super::{kind_code, kind_from_code, logbody, schema};
use crate::telemetry::{Result, TelemetryError};

/// The tables of `telemetry.db` a tenant move knows; any other is refused,
/// so that a new table is classified rather than copied whole.
const KNOWN_TABLES: &[&str] = &[
    "series",
    "log",
    "chunks",
    "events",
    "retention",
    "budgets",
    "budget_ceilings",
    "purged_series",
    "purged_events",
];

/// What the import brought in.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportedTelemetry {
    pub series: u64,
    pub points: u64,
    pub events: u64,
}

fn kinds(conn: &Connection, schema: &str) -> Result<HashMap<SeriesId, Kind>> {
    let mut kinds = HashMap::new();
    for table in ["series", "purged_series"] {
        let mut q = conn.prepare(&format!("SELECT id, kind FROM {schema}.{table}"))?;
        let rows = q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (id, code) = row?;
            let kind = kind_from_code(code).ok_or_else(|| {
                TelemetryError::storage(format!("series {id} has unknown kind {code}"))
            })?;
            kinds.insert(id as SeriesId, kind);
        }
    }
    Ok(kinds)
}

/// Keeps only `tenant`'s telemetry in a copy of `telemetry.db` (changed in
/// place) and vacuums it: other tenants' series, chunks, events and
/// settings go, each log batch keeps only the tenant's points, and what
/// purges of the tenant's deleted devices left behind goes too.
pub fn extract_tenant(path: &Path, tenant: &TenantId) -> Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = DELETE;")?;
    {
        let mut q = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        for name in q.query_map([], |r| r.get::<_, String>(0))? {
            let name = name?;
            if !KNOWN_TABLES.contains(&name.as_str()) {
                return Err(TelemetryError::storage(format!(
                    "table `{name}` of telemetry.db is unknown to tenant moves: classify it in \
                     ferrule-store's telemetry/embedded/tenant_move.rs"
                )));
            }
        }
    }
    let t = tenant.as_str();
    let tx = conn.unchecked_transaction()?;
    let kinds = kinds(&tx, "main")?;
    let keep: HashSet<SeriesId> = {
        let mut q = tx.prepare(
            "SELECT id FROM series WHERE tenant = ?1 AND id NOT IN (SELECT id FROM purged_series)",
        )?;
        q.query_map([t], |r| r.get::<_, i64>(0))?
            .map(|r| r.map(|id| id as SeriesId))
            .collect::<rusqlite::Result<_>>()?
    };
    let batches: Vec<(i64, Vec<u8>)> = {
        let mut q = tx.prepare("SELECT seq, body FROM log ORDER BY seq")?;
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    tx.execute("DELETE FROM log", [])?;
    for (seq, body) in batches {
        let points = logbody::points(&body, |id| kinds.get(&id).copied())
            .ok_or_else(|| TelemetryError::storage(format!("log batch {seq} is malformed")))?;
        let mut kept = Vec::new();
        for (id, ts, value) in points.iter().filter(|p| keep.contains(&p.0)) {
            logbody::put_point(&mut kept, *id, *ts, value);
        }
        if !kept.is_empty() {
            tx.execute(
                "INSERT INTO log (seq, body) VALUES (?1, ?2)",
                params![seq, kept],
            )?;
        }
    }
    tx.execute_batch(&format!(
        "DELETE FROM events WHERE tenant <> '{t}' OR id <= coalesce((
             SELECT max(p.last_id) FROM purged_events p
             WHERE p.tenant = events.tenant AND (p.device = '' OR p.device = events.device)), 0);
         DELETE FROM series WHERE tenant <> '{t}' OR id IN (SELECT id FROM purged_series);
         DELETE FROM chunks WHERE series NOT IN (SELECT id FROM series);
         DELETE FROM retention WHERE tenant <> '{t}';
         DELETE FROM budgets WHERE tenant <> '{t}';
         DELETE FROM budget_ceilings WHERE tenant <> '{t}';
         DELETE FROM purged_series;
         DELETE FROM purged_events;"
    ))?;
    tx.commit()?;
    conn.execute_batch("VACUUM;")?;
    Ok(())
}

/// Brings a tenant extract's schema up to this binary's (the file is the
/// importer's own copy); refuses one from a newer binary.
pub fn prepare_source(path: &Path) -> Result<()> {
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = DELETE;")?;
    schema::migrate(&conn)
}

/// One series of the extract.
struct Incoming {
    old: SeriesId,
    device: DeviceId,
    key: String,
    kind: Kind,
    sealed_seq: i64,
    deleted_before: i64,
}

impl Writer {
    /// Imports tenant `from` of the extract at `source` as tenant `to`,
    /// which must have no telemetry here (the caller purges first).
    pub(super) fn import_tenant(
        &mut self,
        source: &Path,
        from: &TenantId,
        to: &TenantId,
    ) -> Result<ImportedTelemetry> {
        if !self.inner.catalog.read().of_tenant(to).is_empty() {
            return Err(TelemetryError::storage(format!(
                "tenant `{to}` still has telemetry here; purge it before importing"
            )));
        }
        let path = source
            .to_str()
            .ok_or_else(|| TelemetryError::storage("the extract's path is not UTF-8"))?;
        self.conn
            .execute("ATTACH DATABASE ?1 AS moved", params![path])?;
        let result = self.import_attached(from, to);
        if let Err(e) = self.conn.execute_batch("DETACH DATABASE moved;") {
            tracing::warn!(error = %e, "detaching an imported tenant's telemetry failed");
        }
        result
    }

    fn import_attached(&mut self, from: &TenantId, to: &TenantId) -> Result<ImportedTelemetry> {
        let kinds = kinds(&self.conn, "moved")?;
        let mut incoming = Vec::new();
        {
            let mut q = self.conn.prepare(
                "SELECT id, device, key, kind, sealed_seq, deleted_before FROM moved.series
                 WHERE tenant = ?1 ORDER BY id",
            )?;
            let mut rows = q.query([from.as_str()])?;
            while let Some(r) = rows.next()? {
                let old = r.get::<_, i64>(0)? as SeriesId;
                let device: String = r.get(1)?;
                let device = DeviceId::new(&device).map_err(|e| {
                    TelemetryError::storage(format!("series {old} has device id {device:?}: {e}"))
                })?;
                incoming.push(Incoming {
                    old,
                    device,
                    key: r.get(2)?,
                    kind: kinds[&old],
                    sealed_seq: r.get(4)?,
                    deleted_before: r.get(5)?,
                });
            }
        }
        let first_id = self.inner.catalog.read().next_id;
        let new_ids: HashMap<SeriesId, SeriesId> = incoming
            .iter()
            .enumerate()
            .map(|(i, s)| (s.old, first_id + i as SeriesId))
            .collect();
        let by_old: HashMap<SeriesId, &Incoming> = incoming.iter().map(|s| (s.old, s)).collect();
        // The points the source had not sealed yet: one new batch here.
        let mut recent: Vec<(SeriesId, i64, TelemetryValue)> = Vec::new();
        {
            let mut q = self
                .conn
                .prepare("SELECT seq, body FROM moved.log ORDER BY seq")?;
            let mut rows = q.query([])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let body: Vec<u8> = r.get(1)?;
                let points =
                    logbody::points(&body, |id| kinds.get(&id).copied()).ok_or_else(|| {
                        TelemetryError::storage(format!(
                            "log batch {seq} of the extract is malformed"
                        ))
                    })?;
                for (old, ts, value) in points {
                    let Some(s) = by_old.get(&old) else { continue };
                    if seq > s.sealed_seq && ts >= s.deleted_before {
                        recent.push((new_ids[&old], ts, value));
                    }
                }
            }
        }
        let seq = self.committed_seq + 1;
        let mut body = Vec::new();
        for (id, ts, value) in &recent {
            logbody::put_point(&mut body, *id, *ts, value);
        }
        let mut next_event = self.next_event_id;
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS moved_ids (old INTEGER PRIMARY KEY, new INTEGER NOT NULL);
             DELETE FROM temp.moved_ids;",
        )?;
        for s in &incoming {
            let new = new_ids[&s.old] as i64;
            tx.execute(
                "INSERT INTO main.series (id, tenant, device, key, kind, sealed_seq, deleted_before)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    new,
                    to.as_str(),
                    s.device.as_str(),
                    s.key,
                    kind_code(s.kind),
                    seq as i64 - 1,
                    s.deleted_before
                ],
            )?;
            tx.execute(
                "INSERT INTO temp.moved_ids (old, new) VALUES (?1, ?2)",
                params![s.old as i64, new],
            )?;
        }
        let (chunk_points, chunk_bytes): (i64, i64) = tx.query_row(
            "SELECT coalesce(sum(c.points), 0), coalesce(sum(length(c.data)), 0)
             FROM moved.chunks c JOIN temp.moved_ids m ON m.old = c.series",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "INSERT INTO main.chunks (series, min_ts, max_ts, points, data)
             SELECT m.new, c.min_ts, c.max_ts, c.points, c.data
             FROM moved.chunks c JOIN temp.moved_ids m ON m.old = c.series",
            [],
        )?;
        let (mut events, mut event_bytes) = (0u64, 0i64);
        {
            let mut q = tx.prepare(
                "SELECT device, ts, type, payload FROM moved.events WHERE tenant = ?1 ORDER BY id",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO main.events (id, tenant, device, ts, type, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut rows = q.query([from.as_str()])?;
            while let Some(r) = rows.next()? {
                let device: String = r.get(0)?;
                let ts: i64 = r.get(1)?;
                let kind: String = r.get(2)?;
                let payload: Vec<u8> = r.get(3)?;
                insert.execute(params![next_event, to.as_str(), device, ts, kind, payload])?;
                next_event += 1;
                events += 1;
                event_bytes += (payload.len() + kind.len()) as i64 + EVENT_OVERHEAD;
            }
        }
        for (table, cols) in [
            ("retention", "profile, days"),
            ("budgets", "bytes"),
            ("budget_ceilings", "bytes"),
        ] {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO main.{table} (tenant, {cols})
                     SELECT ?1, {cols} FROM moved.{table} WHERE tenant = ?2"
                ),
                params![to.as_str(), from.as_str()],
            )?;
        }
        if !body.is_empty() {
            tx.execute(
                "INSERT INTO main.log (seq, body) VALUES (?1, ?2)",
                params![seq as i64, body],
            )?;
        }
        tx.execute_batch("DROP TABLE temp.moved_ids;")?;
        tx.commit()?;

        // Committed: memory follows.
        self.next_event_id = next_event;
        let mut head_bytes = 0i64;
        {
            let mut catalog = self.inner.catalog.write();
            for s in &incoming {
                let mut series =
                    Series::new(to.clone(), s.device.clone(), s.key.as_str().into(), s.kind);
                series.deleted_before = s.deleted_before;
                catalog.insert(new_ids[&s.old], series);
            }
            catalog.head_points += recent.len();
            for (id, ts, value) in &recent {
                head_bytes += point_cost(value) as i64;
                if let Some(s) = catalog.series.get_mut(id) {
                    s.push(seq, *ts, value.clone());
                }
            }
        }
        if !body.is_empty() {
            self.committed_seq = seq;
            self.log_rows.insert(seq, body.len() as u64);
            self.log_changed();
        }
        let settings = super::load_settings(&self.conn)?;
        if let Some(s) = settings.get(to) {
            self.inner.settings.write().insert(to.clone(), s.clone());
        }
        self.inner
            .add_usage(to, chunk_bytes + event_bytes + head_bytes);
        Ok(ImportedTelemetry {
            series: incoming.len() as u64,
            points: chunk_points as u64 + recent.len() as u64,
            events,
        })
    }
}

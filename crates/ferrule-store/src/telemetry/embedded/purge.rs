//! Purges: removing what a deleted device or tenant kept.
//!
//! A purge has two parts, both on the writer thread.
//!
//! - The *detach*, one short transaction in order with appends: the
//!   scope's series rows move to `purged_series`, its events get a horizon
//!   in `purged_events` (ids up to the last one written), a tenant's
//!   retention settings and budget go. In memory the series leave the
//!   catalog, so no reader finds them, and the horizon hides the events. A
//!   restart keeps it so: replay skips purged series, reads apply the
//!   horizons. A device or tenant created again under the same id gets new
//!   series and new event ids, and starts empty.
//! - The *reclaim*: the chunk and event rows themselves are deleted in
//!   bounded steps between write batches (`telemetry.purge_interval`
//!   apart), so ingest keeps flowing whatever the size; it resumes after a
//!   restart from the two tables. A purged series' row is kept, for its
//!   kind, until the log no longer holds batches that may contain its
//!   points (the log is trimmed as live series seal).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use ferrule_core::{DeviceId, TenantId};
use ferrule_tsdb::Kind;
use rusqlite::{Connection, params};

use super::catalog::SeriesId;
use super::writer::{EVENT_OVERHEAD, Writer};
use super::{kind_code, kind_from_code};
use crate::telemetry::observe;
use crate::telemetry::{PurgeScope, Result, TelemetryError};

/// Chunk rows deleted per reclaim step at most. With the events below, a
/// step takes a few ms: another tenant's commits wait for at most one.
const RECLAIM_CHUNKS: usize = 64;
/// Event rows deleted per reclaim step at most.
const RECLAIM_EVENTS: usize = 1024;

/// A purged series: its chunks to delete, then its row to forget.
#[derive(Debug, Clone, Copy)]
pub struct PurgedSeries {
    pub kind: Kind,
    /// The last log batch that can hold its points.
    pub last_seq: u64,
    /// Whether chunks of it may be left.
    pub chunks_left: bool,
}

/// Events of a tenant (`device: None`) or a device, ids up to a horizon.
type EventScope = (TenantId, Option<DeviceId>);

/// What purges left to reclaim; owned by the writer.
#[derive(Debug, Default)]
pub struct Pending {
    pub series: BTreeMap<SeriesId, PurgedSeries>,
    pub events: BTreeMap<EventScope, i64>,
}

impl Pending {
    /// Series and event scopes whose rows are still to delete.
    fn len(&self) -> usize {
        self.series.values().filter(|s| s.chunks_left).count() + self.events.len()
    }
}

/// Event id horizons of pending purges, for readers: a tenant's or a
/// device's events with an id at or below its horizon are purged.
#[derive(Debug, Default, Clone)]
pub struct Horizons(HashMap<TenantId, TenantHorizons>);

/// One tenant's horizons: the whole tenant's (0: none) and its devices'.
#[derive(Debug, Default, Clone)]
pub struct TenantHorizons {
    tenant: i64,
    devices: HashMap<DeviceId, i64>,
}

impl TenantHorizons {
    /// The highest purged event id of `device` (0: none).
    pub fn of(&self, device: &DeviceId) -> i64 {
        self.tenant
            .max(self.devices.get(device).copied().unwrap_or(0))
    }
}

impl Horizons {
    /// The highest purged event id of a device (0: none).
    pub fn of(&self, tenant: &TenantId, device: &DeviceId) -> i64 {
        self.0.get(tenant).map_or(0, |h| h.of(device))
    }

    /// A tenant's horizons, for reads over all its devices.
    pub fn tenant(&self, tenant: &TenantId) -> TenantHorizons {
        self.0.get(tenant).cloned().unwrap_or_default()
    }

    fn slot(&mut self, (tenant, device): &EventScope) -> &mut i64 {
        let h = self.0.entry(tenant.clone()).or_default();
        match device {
            None => &mut h.tenant,
            Some(d) => h.devices.entry(d.clone()).or_default(),
        }
    }

    fn raise(&mut self, scope: &EventScope, last_id: i64) {
        let slot = self.slot(scope);
        *slot = (*slot).max(last_id);
    }

    fn clear(&mut self, (tenant, device): &EventScope) {
        let Some(h) = self.0.get_mut(tenant) else {
            return;
        };
        match device {
            None => h.tenant = 0,
            Some(d) => {
                h.devices.remove(d);
            }
        }
        if h.tenant == 0 && h.devices.is_empty() {
            self.0.remove(tenant);
        }
    }
}

/// The purges a previous run left unfinished.
pub fn load(conn: &Connection) -> Result<(Pending, Horizons)> {
    let mut pending = Pending::default();
    let mut q = conn.prepare("SELECT id, kind, last_seq FROM purged_series")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let kind = kind_from_code(r.get(1)?)
            .ok_or_else(|| TelemetryError::storage("unknown purged series kind"))?;
        let last_seq: i64 = r.get(2)?;
        pending.series.insert(
            id as SeriesId,
            PurgedSeries {
                kind,
                last_seq: last_seq as u64,
                // The first step finds out.
                chunks_left: true,
            },
        );
    }
    let mut horizons = Horizons::default();
    let mut q = conn.prepare("SELECT tenant, device, last_id FROM purged_events")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let tenant: String = r.get(0)?;
        let device: String = r.get(1)?;
        let last_id: i64 = r.get(2)?;
        let Ok(tenant) = TenantId::new(&tenant) else {
            continue;
        };
        let device = match device.as_str() {
            "" => None,
            d => match DeviceId::new(d) {
                Ok(d) => Some(d),
                Err(_) => continue,
            },
        };
        let scope = (tenant, device);
        horizons.raise(&scope, last_id);
        pending.events.insert(scope, last_id);
    }
    observe::purge_pending(pending.len());
    Ok((pending, horizons))
}

fn device_key(device: &Option<DeviceId>) -> &str {
    device.as_ref().map_or("", |d| d.as_str())
}

impl Writer {
    /// Detaches everything of `scope` (see the module docs) in one
    /// transaction.
    pub fn purge(&mut self, scope: &PurgeScope) -> Result<()> {
        let (tenant, device) = match scope {
            PurgeScope::Device(t, d) => (t, Some(d.clone())),
            PurgeScope::Tenant(t) => (t, None),
        };
        let series: Vec<(SeriesId, Kind)> = {
            let catalog = self.inner.catalog.read();
            let ids = match &device {
                Some(d) => catalog.of_device(tenant, d),
                None => catalog.of_tenant(tenant),
            };
            ids.into_iter()
                .filter_map(|id| catalog.series.get(&id).map(|s| (id, s.kind)))
                .collect()
        };
        let scope_key: EventScope = (tenant.clone(), device.clone());
        // Events below this are hidden already (an earlier purge): their
        // bytes are no longer counted.
        let hidden = {
            let h = self.inner.horizons.read().tenant(tenant);
            match &device {
                Some(d) => h.of(d),
                None => h.tenant,
            }
        };
        let last_event = self.next_event_id - 1;
        let has_settings = self.inner.settings.read().contains_key(tenant);
        let tx = self.conn.transaction()?;
        let events: Option<(i64, i64)> = {
            let sql = if device.is_some() {
                "SELECT count(*), coalesce(sum(length(payload) + length(type)), 0) FROM events
                 WHERE tenant = ?1 AND device = ?2 AND id > ?3"
            } else {
                // A tenant's use is reset whole: only whether any are left
                // matters.
                "SELECT count(*), 0 FROM (SELECT 1 FROM events WHERE tenant = ?1 AND ?2 = '' AND id > ?3 LIMIT 1)"
            };
            let (n, bytes): (i64, i64) = tx.query_row(
                sql,
                params![tenant.as_str(), device_key(&device), hidden],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            (n > 0).then_some((n, bytes))
        };
        if series.is_empty() && events.is_none() && !(device.is_none() && has_settings) {
            // Nothing of it was ever stored (the usual case for a new id).
            return Ok(());
        }
        let mut freed = 0i64;
        for (id, kind) in &series {
            if device.is_some() {
                let bytes: i64 = tx
                    .prepare_cached(
                        "SELECT coalesce(sum(length(data)), 0) FROM chunks WHERE series = ?1",
                    )?
                    .query_row([*id as i64], |r| r.get(0))?;
                freed += bytes;
            }
            tx.prepare_cached(
                "INSERT INTO purged_series (id, kind, last_seq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                *id as i64,
                kind_code(*kind),
                self.committed_seq as i64
            ])?;
            tx.prepare_cached("DELETE FROM series WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        if let Some((n, bytes)) = events {
            freed += bytes + n * EVENT_OVERHEAD;
            tx.execute(
                "INSERT INTO purged_events (tenant, device, last_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, device) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                params![tenant.as_str(), device_key(&device), last_event],
            )?;
        }
        if device.is_none() {
            tx.execute("DELETE FROM retention WHERE tenant = ?1", [tenant.as_str()])?;
            tx.execute(
                "DELETE FROM budget_ceilings WHERE tenant = ?1",
                [tenant.as_str()],
            )?;
            tx.execute("DELETE FROM budgets WHERE tenant = ?1", [tenant.as_str()])?;
        }
        tx.commit()?;

        {
            let mut catalog = self.inner.catalog.write();
            for (id, kind) in &series {
                if let Some(s) = catalog.remove(*id) {
                    freed += s.head_bytes as i64;
                }
                self.pending.series.insert(
                    *id,
                    PurgedSeries {
                        kind: *kind,
                        last_seq: self.committed_seq,
                        chunks_left: true,
                    },
                );
            }
        }
        if events.is_some() {
            let last = self.pending.events.entry(scope_key.clone()).or_default();
            *last = (*last).max(last_event);
            self.inner.horizons.write().raise(&scope_key, last_event);
        }
        if device.is_some() {
            self.inner.add_usage(tenant, -freed);
        } else {
            self.inner.settings.write().remove(tenant);
            self.inner.usage.lock().remove(tenant);
            self.inner.publish_usage(tenant);
        }
        observe::PurgeDetached {
            scope: observe::ScopeKind::of(scope),
            tenant,
            series: series.len(),
            events: events.map_or(0, |(n, _)| n as u64),
        }
        .emit();
        observe::purge_pending(self.pending.len());
        self.next_reclaim = Instant::now() + self.inner.options.purge_interval;
        Ok(())
    }

    /// When the next step of deleting purged rows is due, if any are left.
    pub fn reclaim_due(&self) -> Option<Instant> {
        (self.pending.len() > 0).then_some(self.next_reclaim)
    }

    /// Forgets purged series whose points no log batch can hold any more
    /// (call after trimming the log).
    pub fn forget_purged_series(&mut self) -> Result<()> {
        if !self.pending.series.values().any(|s| !s.chunks_left) {
            return Ok(());
        }
        let oldest_log: Option<i64> = self
            .conn
            .query_row("SELECT min(seq) FROM log", [], |r| r.get(0))?;
        let gone: Vec<SeriesId> = self
            .pending
            .series
            .iter()
            .filter(|(_, s)| !s.chunks_left && oldest_log.is_none_or(|o| o as u64 > s.last_seq))
            .map(|(id, _)| *id)
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for id in &gone {
            tx.prepare_cached("DELETE FROM purged_series WHERE id = ?1")?
                .execute([*id as i64])?;
        }
        tx.commit()?;
        for id in gone {
            self.pending.series.remove(&id);
        }
        Ok(())
    }

    /// Deletes a bounded share of purged rows, if a step is due.
    pub fn reclaim_if_due(&mut self) {
        if self.reclaim_due().is_none_or(|at| at > Instant::now()) {
            return;
        }
        self.next_reclaim = Instant::now() + self.inner.options.purge_interval;
        if let Err(e) = self.reclaim_step() {
            tracing::warn!(error = %e, "removing purged telemetry failed; will retry");
        }
    }

    fn reclaim_step(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        let mut chunks_left = RECLAIM_CHUNKS;
        let mut done_series = Vec::new();
        for (id, _) in self.pending.series.iter().filter(|(_, s)| s.chunks_left) {
            if chunks_left == 0 {
                break;
            }
            let n = tx
                .prepare_cached(
                    "DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE series = ?1 LIMIT ?2)",
                )?
                .execute(params![*id as i64, chunks_left as i64])?;
            if n < chunks_left {
                done_series.push(*id);
            }
            chunks_left -= n;
        }
        let mut events_left = RECLAIM_EVENTS;
        let mut done_events = Vec::new();
        for (scope, last_id) in &self.pending.events {
            if events_left == 0 {
                break;
            }
            let (tenant, device) = scope;
            let n = match device {
                None => tx
                    .prepare_cached(
                        "DELETE FROM events WHERE id IN
                         (SELECT id FROM events WHERE tenant = ?1 AND id <= ?2 LIMIT ?3)",
                    )?
                    .execute(params![tenant.as_str(), last_id, events_left as i64]),
                Some(d) => tx
                    .prepare_cached(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events
                         WHERE tenant = ?1 AND device = ?2 AND id <= ?3 LIMIT ?4)",
                    )?
                    .execute(params![
                        tenant.as_str(),
                        d.as_str(),
                        last_id,
                        events_left as i64
                    ]),
            }?;
            let all_deleted = n < events_left;
            events_left -= n;
            if all_deleted {
                tx.prepare_cached("DELETE FROM purged_events WHERE tenant = ?1 AND device = ?2")?
                    .execute(params![tenant.as_str(), device_key(device)])?;
                done_events.push(scope.clone());
            }
        }
        tx.commit()?;
        for id in done_series {
            if let Some(s) = self.pending.series.get_mut(&id) {
                s.chunks_left = false;
            }
        }
        if !done_events.is_empty() {
            let mut horizons = self.inner.horizons.write();
            for scope in done_events {
                self.pending.events.remove(&scope);
                horizons.clear(&scope);
            }
        }
        observe::PurgeReclaimed {
            chunks: (RECLAIM_CHUNKS - chunks_left) as u64,
            events: (RECLAIM_EVENTS - events_left) as u64,
            pending: self.pending.len(),
        }
        .emit();
        Ok(())
    }
}

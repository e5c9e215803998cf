//! The telemetry writer: one thread that owns the write connection.
//!
//! It takes appends in batches (from what queued while the previous commit
//! was on disk: group commit, each tenant's appends in turn, see `lanes`), writes each batch as one log row plus its
//! events in one transaction, then moves the points into their series'
//! heads and reports the batch's ticket committed. Between batches it seals
//! heads that are full, old, or over the memory budget into chunks, and
//! drops log rows no head needs any more. Retention deletes, settings
//! changes and purges (see `purge`) run here too, so nothing else ever
//! writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ferrule_core::Ledger;
use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::catalog::{Series, SeriesId, kind_of, point_cost};
use super::chunks;
use super::lanes::Lanes;
use super::{Inner, logbody, purge};
use crate::telemetry::{Deleted, NewEvent, PurgeScope, Result, RetentionSettings, observe};

/// How often the writer looks for heads due for sealing when idle.
const TICK: Duration = Duration::from_millis(250);
/// Points per commit at most; more waits for the next one.
const MAX_BATCH_POINTS: usize = 200_000;
/// Points sealed per round at most (unless forced), so that a sealing
/// round never holds up ingest for long.
const SEAL_ROUND_POINTS: usize = 262_144;

pub enum Request {
    Append {
        ticket: u64,
        tenant: TenantId,
        device: DeviceId,
        readings: Vec<Reading>,
        events: Vec<NewEvent>,
    },
    SealAll(oneshot::Sender<Result<()>>),
    Delete {
        tenant: TenantId,
        device: DeviceId,
        cutoff: i64,
        done: oneshot::Sender<Result<Deleted>>,
    },
    SetRetention {
        tenant: TenantId,
        settings: RetentionSettings,
        done: oneshot::Sender<Result<()>>,
    },
    Purge {
        scope: PurgeScope,
        done: oneshot::Sender<Result<()>>,
    },
    Close(oneshot::Sender<Result<()>>),
    /// A moved tenant's telemetry (see `tenant_move`).
    ImportTenant {
        source: std::path::PathBuf,
        from: TenantId,
        to: TenantId,
        done: oneshot::Sender<Result<super::tenant_move::ImportedTelemetry>>,
    },
}

pub struct Writer {
    pub inner: Arc<Inner>,
    pub conn: Connection,
    pub rx: Receiver<Request>,
    pub last_seal_check: Instant,
    pub last_vacuum: Instant,
    /// The last log batch committed.
    pub committed_seq: u64,
    /// Events get their ids here, never reusing one (see `purge`).
    pub next_event_id: i64,
    /// Purged rows still to delete, and when the next step may run.
    pub pending: purge::Pending,
    pub next_reclaim: Instant,
    /// Bytes of each recent-log row, by batch number: what forced sealing
    /// must free to keep the log within `max_log_bytes`.
    pub log_rows: BTreeMap<u64, u64>,
}

impl Writer {
    pub fn run(mut self) {
        let mut lanes = Lanes::default();
        loop {
            let mut next = if lanes.is_empty() {
                let wait = self.reclaim_due().map_or(TICK, |at| {
                    at.saturating_duration_since(Instant::now()).min(TICK)
                });
                match self.rx.recv_timeout(wait) {
                    Ok(r) => Some(r),
                    Err(RecvTimeoutError::Timeout) => {
                        self.seal_due(false);
                        self.reclaim_if_due();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                self.rx.try_recv().ok()
            };
            // Everything queued goes into its tenant's lane (the queue is
            // bounded by `append`), up to a request that is not an append.
            let mut barrier = None;
            while let Some(request) = next.take() {
                if matches!(request, Request::Append { .. }) {
                    lanes.push(request);
                    next = self.rx.try_recv().ok();
                } else {
                    barrier = Some(request);
                }
            }
            if let Some(control) = barrier {
                // What was queued before it is committed first, all of it.
                while !lanes.is_empty() {
                    self.commit_from(&mut lanes);
                }
                if self.control(control) {
                    return;
                }
                continue;
            }
            self.commit_from(&mut lanes);
            self.seal_due(false);
            self.reclaim_if_due();
        }
    }

    /// Commits one batch taken from the lanes, each tenant's in turn.
    fn commit_from(&mut self, lanes: &mut Lanes) {
        let (mut points, mut bytes) = (0, 0);
        // A batch stays well within the log's bound, so that sealing
        // before it can always make room.
        let max_bytes = self.inner.options.max_log_bytes / 2;
        let batch = lanes.batch(|request| {
            if let Request::Append { readings, .. } = request {
                points += readings.len();
                bytes += readings.iter().map(log_estimate).sum::<u64>();
            }
            points >= MAX_BATCH_POINTS || bytes >= max_bytes
        });
        self.commit(batch, lanes.mark());
    }

    /// Handles a non-append request; true when the writer must stop.
    fn control(&mut self, request: Request) -> bool {
        match request {
            Request::Append { .. } => unreachable!("appends are batched"),
            Request::SealAll(done) => {
                let _ = done.send(self.seal_all());
            }
            Request::Delete {
                tenant,
                device,
                cutoff,
                done,
            } => {
                let _ = done.send(self.delete_before(&tenant, &device, cutoff));
            }
            Request::SetRetention {
                tenant,
                settings,
                done,
            } => {
                let _ = done.send(self.set_retention(&tenant, settings));
            }
            Request::Purge { scope, done } => {
                let _ = done.send(self.purge(&scope));
            }
            Request::ImportTenant {
                source,
                from,
                to,
                done,
            } => {
                let _ = done.send(self.import_tenant(&source, &from, &to));
            }
            Request::Close(done) => {
                // Everything queued before Close was committed above.
                let _ = done.send(self.seal_all());
                return true;
            }
        }
        false
    }

    /// Commits a batch of appends, retrying until the disk takes it: the
    /// publishers wait for their acknowledgement meanwhile (nothing is
    /// acknowledged that is not on disk).
    fn commit(&mut self, appends: Vec<Request>, mark: u64) {
        if appends.is_empty() {
            return;
        }
        // Log batches are numbered in commit order; tickets, in queue order,
        // may be committed out of order (see `lanes`).
        let seq = self.committed_seq + 1;
        let mut tickets = Vec::with_capacity(appends.len());
        let mut body = Vec::new();
        let mut applied: Vec<(SeriesId, i64, TelemetryValue)> = Vec::new();
        let mut events = Vec::new();
        let mut queued = 0;
        let mut expired = 0u64;
        // Disk use per tenant, published once per batch rather than once per
        // append (each gauge update formats labels and looks up metrics).
        let mut usage: HashMap<TenantId, i64> = HashMap::new();
        // Per series, the last millisecond given to a server-stamped point
        // in this batch (see `Reading::server_stamped`).
        let mut stamped: HashMap<SeriesId, i64> = HashMap::new();
        for request in appends {
            let Request::Append {
                ticket,
                tenant,
                device,
                readings,
                events: evs,
            } = request
            else {
                continue;
            };
            tickets.push(ticket);
            // As counted by `append`: an append of events only counts one.
            queued += readings.len().max(1);
            let before = applied.len();
            for r in readings {
                let Some((id, deleted_before)) =
                    self.series_id(&tenant, &device, &r.key, kind_of(&r.value))
                else {
                    continue;
                };
                let mut ts = r.ts;
                if r.server_stamped {
                    let last = *stamped.entry(id).or_insert_with(|| {
                        let catalog = self.inner.catalog.read();
                        catalog.series.get(&id).map_or(i64::MIN, |s| s.last_stamped)
                    });
                    ts = ts.max(last.saturating_add(1));
                    stamped.insert(id, ts);
                }
                if ts < deleted_before {
                    expired += 1;
                    continue;
                }
                logbody::put_point(&mut body, id, ts, &r.value);
                applied.push((id, ts, r.value));
            }
            let mut bytes: i64 = applied[before..]
                .iter()
                .map(|p| point_cost(&p.2) as i64)
                .sum();
            for e in evs {
                bytes += event_bytes(&e);
                events.push((self.next_event_id, tenant.clone(), device.clone(), e));
                self.next_event_id += 1;
            }
            *usage.entry(tenant).or_default() += bytes;
        }
        self.make_room(body.len() as u64);
        let mut wait = Duration::from_millis(50);
        while let Err(e) = self.write_batch(seq, &body, &events) {
            tracing::error!(error = %e, "writing telemetry failed; retrying");
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        self.committed_seq = seq;
        if !body.is_empty() {
            self.log_rows.insert(seq, body.len() as u64);
            self.log_changed();
        }
        let stored = applied.len() as u64;
        {
            let mut catalog = self.inner.catalog.write();
            catalog.head_points += applied.len();
            for (id, ts, value) in applied {
                if let Some(s) = catalog.series.get_mut(&id) {
                    s.push(seq, ts, value);
                }
            }
            for (id, ts) in stamped {
                if let Some(s) = catalog.series.get_mut(&id) {
                    s.last_stamped = s.last_stamped.max(ts);
                }
            }
        }
        for (tenant, bytes) in &usage {
            self.inner.add_usage(tenant, *bytes);
        }
        observe::BatchCommitted {
            points: stored,
            events: events.len() as u64,
            expired,
        }
        .emit();
        self.inner
            .durability
            .committed_out_of_order(Ledger::Telemetry, &tickets, mark);
        self.inner.dequeued(queued);
    }

    fn write_batch(
        &mut self,
        seq: u64,
        body: &[u8],
        events: &[(i64, TenantId, DeviceId, NewEvent)],
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        if !body.is_empty() {
            tx.prepare_cached("INSERT INTO log (seq, body) VALUES (?1, ?2)")?
                .execute(params![seq as i64, body])?;
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (id, tenant, device, ts, type, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (id, tenant, device, e) in events {
                insert.execute(params![
                    id,
                    tenant.as_str(),
                    device.as_str(),
                    e.ts,
                    e.event_type,
                    &e.payload[..]
                ])?;
            }
        }
        tx.commit()
    }

    /// The series for a key of this kind and its retention horizon, the
    /// series created (and its row committed) on first sight. `None` only
    /// if the row cannot be written, which the log then reports.
    fn series_id(
        &mut self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &str,
        kind: ferrule_tsdb::Kind,
    ) -> Option<(SeriesId, i64)> {
        {
            let catalog = self.inner.catalog.read();
            if let Some(id) = catalog.find(tenant, device, key, kind) {
                let deleted_before = catalog
                    .series
                    .get(&id)
                    .map_or(i64::MIN, |s| s.deleted_before);
                return Some((id, deleted_before));
            }
        }
        let id = self.inner.catalog.read().next_id;
        let written = self.conn.execute(
            "INSERT INTO series (id, tenant, device, key, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id as i64,
                tenant.as_str(),
                device.as_str(),
                key,
                super::kind_code(kind)
            ],
        );
        if let Err(e) = written {
            tracing::error!(error = %e, "creating a telemetry series failed");
            return None;
        }
        self.inner.catalog.write().insert(
            id,
            Series::new(tenant.clone(), device.clone(), key.into(), kind),
        );
        Some((id, i64::MIN))
    }

    /// Seals the heads that are due: full, older than the seal age, or the
    /// largest ones while all heads together exceed their memory budget.
    fn seal_due(&mut self, force: bool) {
        let over_budget =
            self.inner.catalog.read().head_points > self.inner.options.max_head_points;
        if !force && !over_budget && self.last_seal_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_seal_check = Instant::now();
        let due = self.due_series(force);
        for id in due {
            if let Err(e) = self.seal(id) {
                tracing::error!(error = %e, "sealing telemetry failed; will retry");
                break;
            }
        }
        if let Err(e) = self.truncate_log() {
            tracing::warn!(error = %e, "trimming the telemetry log failed");
        }
        if let Err(e) = self.forget_purged_series() {
            tracing::warn!(error = %e, "forgetting purged telemetry series failed");
        }
        if self.last_vacuum.elapsed() > Duration::from_secs(60) {
            self.last_vacuum = Instant::now();
            let _ = self.conn.execute_batch("PRAGMA incremental_vacuum(2048)");
        }
    }

    fn due_series(&self, force: bool) -> Vec<SeriesId> {
        let catalog = self.inner.catalog.read();
        let opts = &self.inner.options;
        let mut due: Vec<(usize, SeriesId)> = catalog
            .series
            .iter()
            .filter(|(_, s)| !s.head.is_empty())
            .filter(|(_, s)| {
                force
                    || s.head.len() >= opts.chunk_points
                    || s.head_since.is_some_and(|t| t.elapsed() >= opts.seal_age)
            })
            .map(|(id, s)| (s.head.len(), *id))
            .collect();
        let mut budget_left = catalog.head_points;
        if budget_left > opts.max_head_points {
            // Largest heads first until half the budget is free.
            let mut by_size: Vec<(usize, SeriesId)> = catalog
                .series
                .iter()
                .filter(|(_, s)| !s.head.is_empty())
                .map(|(id, s)| (s.head.len(), *id))
                .collect();
            by_size.sort_unstable_by(|a, b| b.cmp(a));
            for (n, id) in by_size {
                if budget_left <= opts.max_head_points / 2 {
                    break;
                }
                budget_left -= n;
                due.push((n, id));
            }
        }
        due.sort_unstable_by(|a, b| b.cmp(a));
        due.dedup_by_key(|(_, id)| *id);
        if force {
            return due.into_iter().map(|(_, id)| id).collect();
        }
        let mut total = 0;
        due.into_iter()
            .take_while(|(n, _)| {
                let go = total < SEAL_ROUND_POINTS;
                total += n;
                go
            })
            .map(|(_, id)| id)
            .collect()
    }

    fn seal_all(&mut self) -> Result<()> {
        let due = self.due_series(true);
        for id in due {
            self.seal(id)?;
        }
        self.truncate_log()
    }

    /// Seals one series' head: merged with any chunk it overlaps (late or
    /// replayed points), written as new chunks in one transaction with the
    /// series' sealed log position, then dropped from memory.
    fn seal(&mut self, id: SeriesId) -> Result<()> {
        let (kind, tenant, head, max_seq) = {
            let catalog = self.inner.catalog.read();
            let Some(s) = catalog.series.get(&id) else {
                return Ok(());
            };
            (
                s.kind,
                s.tenant.clone(),
                s.head.points(|_| true),
                s.head_max_seq,
            )
        };
        if head.is_empty() {
            return Ok(());
        }
        let lo = head.iter().map(|p| p.0).min().unwrap_or(0);
        let hi = head.iter().map(|p| p.0).max().unwrap_or(0);
        let tx = self.conn.transaction()?;
        let mut old_ids = Vec::new();
        let mut old_points = Vec::new();
        let mut old_bytes = 0u64;
        {
            let mut q = tx
                .prepare_cached(
                    "SELECT id, data FROM chunks WHERE series = ?1 AND min_ts <= ?3 AND max_ts >= ?2 ORDER BY min_ts",
                )?;
            let rows = q.query_map(params![id as i64, lo, hi], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let (cid, data) = row?;
                old_bytes += data.len() as u64;
                old_points.extend(chunks::decode(data, i64::MIN, i64::MAX)?);
                old_ids.push(cid);
            }
            // A slow series seals small heads (by age); folding them into
            // the small chunk before them keeps chunks large, and
            // compression good, whatever the sending rate.
            let mut q = tx
                .prepare_cached(
                    "SELECT id, data FROM chunks WHERE series = ?1 AND min_ts < ?2 AND points < ?3 \
                     AND min_ts = (SELECT max(min_ts) FROM chunks WHERE series = ?1 AND min_ts < ?2)",
                )?;
            let mut rows = q.query(params![
                id as i64,
                lo,
                (self.inner.options.chunk_points / 2) as i64
            ])?;
            if let Some(r) = rows.next()? {
                let cid: i64 = r.get(0)?;
                if !old_ids.contains(&cid) {
                    let data: Vec<u8> = r.get(1)?;
                    old_bytes += data.len() as u64;
                    let mut before = chunks::decode(data, i64::MIN, i64::MAX)?;
                    before.append(&mut old_points);
                    old_points = before;
                    old_ids.push(cid);
                }
            }
        }
        let merged = chunks::merge(old_points, head.clone());
        let sealed = chunks::encode(kind, &merged, self.inner.options.chunk_points)?;
        let mut new_bytes = 0u64;
        {
            let mut del = tx.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
            for cid in old_ids {
                del.execute([cid])?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO chunks (series, min_ts, max_ts, points, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
            for c in &sealed {
                new_bytes += c.as_bytes().len() as u64;
                ins.execute(params![
                    id as i64,
                    c.min_ts(),
                    c.max_ts(),
                    c.len() as i64,
                    c.as_bytes()
                ])?;
            }
            tx.prepare_cached("UPDATE series SET sealed_seq = ?2 WHERE id = ?1")?
                .execute(params![id as i64, max_seq as i64])?;
        }
        tx.commit()?;
        let head_bytes = {
            let mut catalog = self.inner.catalog.write();
            let (mut removed, mut bytes) = (0, 0);
            if let Some(s) = catalog.series.get_mut(&id) {
                // Only this thread adds points, so the head is what we read.
                removed = s.head.len();
                bytes = s.clear_head();
            }
            catalog.head_points -= removed;
            bytes as i64
        };
        self.inner
            .add_usage(&tenant, new_bytes as i64 - old_bytes as i64 - head_bytes);
        observe::SeriesSealed {
            chunks: sealed.len() as u64,
        }
        .emit();
        Ok(())
    }

    /// Drops log rows whose points are all sealed (or deleted).
    fn truncate_log(&mut self) -> Result<()> {
        let low = {
            let catalog = self.inner.catalog.read();
            catalog
                .series
                .values()
                .filter(|s| !s.head.is_empty())
                .map(|s| s.head_min_seq)
                .min()
        };
        let sql = match low {
            Some(low) => format!("DELETE FROM log WHERE seq < {low}"),
            None => "DELETE FROM log".to_owned(),
        };
        self.conn.execute(&sql, [])?;
        self.log_rows = match low {
            Some(low) => self.log_rows.split_off(&low),
            None => BTreeMap::new(),
        };
        self.log_changed();
        Ok(())
    }

    /// Publishes the log's size; once it is below the point where
    /// publishers are slowed, lets them go on.
    pub(super) fn log_changed(&self) {
        let bytes: u64 = self.log_rows.values().sum();
        self.inner.log_bytes.store(bytes, Ordering::Release);
        observe::log_bytes(bytes);
        if !self.inner.log_is_full() {
            self.inner.drained.notify_waiters();
        }
    }

    /// Before a batch of `incoming` bytes is written: if the log would pass
    /// `max_log_bytes`, seals the series whose points hold its oldest rows,
    /// early, until it is down to half, and trims it. The log thus never
    /// holds more than its bound, however fast devices send.
    fn make_room(&mut self, incoming: u64) {
        let max = self.inner.options.max_log_bytes;
        let mut held: u64 = self.log_rows.values().sum();
        if held + incoming <= max {
            return;
        }
        let target = max / 2;
        // Rows below `cutoff` must go.
        let mut cutoff = 0;
        for (&seq, &bytes) in &self.log_rows {
            if held + incoming <= target {
                break;
            }
            held -= bytes;
            cutoff = seq + 1;
        }
        let due: Vec<SeriesId> = self
            .inner
            .catalog
            .read()
            .series
            .iter()
            .filter(|(_, s)| !s.head.is_empty() && s.head_min_seq < cutoff)
            .map(|(id, _)| *id)
            .collect();
        observe::SealsForced {
            series: due.len() as u64,
        }
        .emit();
        for id in due {
            if let Err(e) = self.seal(id) {
                tracing::error!(error = %e, "sealing telemetry early failed; will retry");
                break;
            }
        }
        if let Err(e) = self.truncate_log() {
            tracing::warn!(error = %e, "trimming the telemetry log failed");
        }
    }

    /// Deletes a device's points and events before `cutoff`, rewriting the
    /// chunks that straddle it.
    fn delete_before(
        &mut self,
        tenant: &TenantId,
        device: &DeviceId,
        cutoff: i64,
    ) -> Result<Deleted> {
        let ids = self.inner.catalog.read().of_device(tenant, device);
        let mut deleted = Deleted::default();
        let mut freed = 0i64;
        let tx = self.conn.transaction()?;
        for &id in &ids {
            let kind = match self.inner.catalog.read().series.get(&id) {
                Some(s) => s.kind,
                None => continue,
            };
            let mut doomed: Vec<(i64, i64, Vec<u8>)> = Vec::new();
            {
                let mut q = tx.prepare_cached(
                    "SELECT id, points, data FROM chunks WHERE series = ?1 AND min_ts < ?2",
                )?;
                let rows = q.query_map(params![id as i64, cutoff], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                for row in rows {
                    doomed.push(row?);
                }
            }
            for (cid, points, data) in doomed {
                freed += data.len() as i64;
                let kept = chunks::decode(data, cutoff, i64::MAX)?;
                deleted.points += points as u64 - kept.len() as u64;
                tx.execute("DELETE FROM chunks WHERE id = ?1", [cid])?;
                for c in chunks::encode(kind, &kept, self.inner.options.chunk_points)? {
                    freed -= c.as_bytes().len() as i64;
                    tx.execute(
                        "INSERT INTO chunks (series, min_ts, max_ts, points, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![id as i64, c.min_ts(), c.max_ts(), c.len() as i64, c.as_bytes()],
                    )?;
                }
            }
            tx.execute(
                "UPDATE series SET deleted_before = max(deleted_before, ?2) WHERE id = ?1",
                params![id as i64, cutoff],
            )?;
        }
        // Purged events are the purge's to delete: they count no more.
        let hidden = self.inner.horizons.read().of(tenant, device);
        let (events, event_bytes): (i64, i64) = tx.query_row(
            "SELECT count(*), coalesce(sum(length(payload) + length(type)), 0) FROM events
                 WHERE tenant = ?1 AND device = ?2 AND ts < ?3 AND id > ?4",
            params![tenant.as_str(), device.as_str(), cutoff, hidden],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "DELETE FROM events WHERE tenant = ?1 AND device = ?2 AND ts < ?3 AND id > ?4",
            params![tenant.as_str(), device.as_str(), cutoff, hidden],
        )?;
        tx.commit()?;
        deleted.events = events as u64;
        freed += event_bytes + events * EVENT_OVERHEAD;
        {
            let mut catalog = self.inner.catalog.write();
            let mut removed = 0;
            for id in &ids {
                if let Some(s) = catalog.series.get_mut(id) {
                    s.deleted_before = s.deleted_before.max(cutoff);
                    let (n, bytes) = s.drop_before(cutoff);
                    removed += n;
                    freed += bytes as i64;
                    if s.head.is_empty() {
                        s.head_since = None;
                    }
                }
            }
            catalog.head_points -= removed;
            deleted.points += removed as u64;
        }
        self.inner.add_usage(tenant, -freed);
        Ok(deleted)
    }

    fn set_retention(&mut self, tenant: &TenantId, settings: RetentionSettings) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM retention WHERE tenant = ?1", [tenant.as_str()])?;
        tx.execute("DELETE FROM budgets WHERE tenant = ?1", [tenant.as_str()])?;
        tx.execute(
            "DELETE FROM budget_ceilings WHERE tenant = ?1",
            [tenant.as_str()],
        )?;
        if let Some(bytes) = settings.disk_budget_ceiling_bytes {
            tx.execute(
                "INSERT INTO budget_ceilings (tenant, bytes) VALUES (?1, ?2)",
                params![tenant.as_str(), bytes as i64],
            )?;
        }
        if let Some(days) = settings.default_days {
            tx.execute(
                "INSERT INTO retention (tenant, profile, days) VALUES (?1, '', ?2)",
                params![tenant.as_str(), days],
            )?;
        }
        for (profile, days) in &settings.profiles {
            tx.execute(
                "INSERT INTO retention (tenant, profile, days) VALUES (?1, ?2, ?3)",
                params![tenant.as_str(), profile, days],
            )?;
        }
        if let Some(bytes) = settings.disk_budget_bytes {
            tx.execute(
                "INSERT INTO budgets (tenant, bytes) VALUES (?1, ?2)",
                params![tenant.as_str(), bytes as i64],
            )?;
        }
        tx.commit()?;
        self.inner.settings.write().insert(tenant.clone(), settings);
        self.inner.publish_usage(tenant);
        Ok(())
    }
}

/// Bookkeeping bytes counted per event beyond its payload and type.
pub const EVENT_OVERHEAD: i64 = 48;

/// About what a reading takes in a log row (series and timestamp varints,
/// then the value), for sizing batches.
fn log_estimate(r: &Reading) -> u64 {
    match &r.value {
        TelemetryValue::Text(s) => 16 + s.len() as u64,
        _ => 20,
    }
}

pub fn event_bytes(e: &NewEvent) -> i64 {
    (e.payload.len() + e.event_type.len()) as i64 + EVENT_OVERHEAD
}

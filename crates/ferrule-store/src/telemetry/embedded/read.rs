//! Queries: a series' points are its chunks (from SQLite) merged with a
//! snapshot of its head, taken first — a seal that lands in between then
//! shows a point twice (the merge keeps one), never zero times. Purged
//! series are not in the catalog, and purged events are below their
//! scope's horizon: neither is ever returned.

use std::collections::BTreeMap;

use ferrule_core::telemetry::TelemetryValue;
use ferrule_core::{DeviceId, TenantId};
use ferrule_tsdb::{Aggregator, Chunk, ChunkHeader, Kind};
use rusqlite::{Connection, params};

use super::Inner;
use super::catalog::{Points, SeriesId};
use super::chunks;
use crate::telemetry::{
    Agg, Event, EventQuery, ExportRecord, Order, Point, Range, Result, SeriesQuery, TelemetryError,
};

/// The series of a key (one per kind) with their kinds and head points in
/// the query's range.
fn snapshot(inner: &Inner, series: &SeriesQuery) -> Vec<(SeriesId, Kind, Points)> {
    let (range, catalog) = (series.range, inner.catalog.read());
    catalog
        .of_key(&series.tenant, &series.device, &series.key)
        .iter()
        .filter_map(|id| {
            let s = catalog.series.get(id)?;
            Some((*id, s.kind, s.head_in(range.from, range.to)))
        })
        .collect()
}

/// Stored chunks of a series overlapping `range`, in time order.
fn chunk_rows(
    conn: &Connection,
    id: SeriesId,
    range: Range,
    newest_first: bool,
) -> Result<Vec<Vec<u8>>> {
    let sql = if newest_first {
        "SELECT data FROM chunks WHERE series = ?1 AND max_ts >= ?2 AND min_ts < ?3 ORDER BY min_ts DESC"
    } else {
        "SELECT data FROM chunks WHERE series = ?1 AND max_ts >= ?2 AND min_ts < ?3 ORDER BY min_ts"
    };
    let mut q = conn.prepare_cached(sql)?;
    let rows = q.query_map(params![id as i64, range.from, range.to], |r| r.get(0))?;
    rows.collect::<rusqlite::Result<Vec<Vec<u8>>>>()
        .map_err(TelemetryError::from)
}

/// Points of one series in `range`: all of them, or enough chunks to hold
/// the first/last `limit` (chunks never overlap, so later ones cannot
/// contribute once `limit` points are in hand).
fn series_points(
    conn: &Connection,
    id: SeriesId,
    head: Vec<(i64, TelemetryValue)>,
    range: Range,
    order: Order,
    limit: usize,
) -> Result<Vec<(i64, TelemetryValue)>> {
    let newest_first = order == Order::Newest;
    let mut stored: Vec<(i64, TelemetryValue)> = Vec::new();
    for data in chunk_rows(conn, id, range, newest_first)? {
        let pts = chunks::decode(data, range.from, range.to)?;
        if newest_first {
            let mut pts = pts;
            pts.extend(stored);
            stored = pts;
        } else {
            stored.extend(pts);
        }
        if stored.len() >= limit {
            break;
        }
    }
    Ok(chunks::merge(stored, head))
}

/// Keeps `limit` points from the end `order` names; ascending either way.
fn cut(
    mut pts: Vec<(i64, TelemetryValue)>,
    order: Order,
    limit: usize,
) -> Vec<(i64, TelemetryValue)> {
    if pts.len() > limit {
        match order {
            Order::Oldest => pts.truncate(limit),
            Order::Newest => {
                pts.drain(..pts.len() - limit);
            }
        }
    }
    pts
}

pub fn raw(
    inner: &Inner,
    conn: &Connection,
    series: &SeriesQuery,
    order: Order,
    limit: usize,
) -> Result<Vec<Point>> {
    let range = series.range;
    let mut all = Vec::new();
    for (id, _, head) in snapshot(inner, series) {
        all.extend(cut(
            series_points(conn, id, head, range, order, limit)?,
            order,
            limit,
        ));
    }
    // Several kinds of one key: interleave them by time.
    all.sort_by_key(|p| p.0);
    Ok(cut(all, order, limit)
        .into_iter()
        .map(|(ts, value)| Point { ts, value })
        .collect())
}

pub fn aggregate(
    inner: &Inner,
    conn: &Connection,
    series: &SeriesQuery,
    interval_ms: i64,
    agg: Agg,
) -> Result<Vec<(i64, f64)>> {
    let range = series.range;
    let mut aggregator = Aggregator::new(range.from, range.to, interval_ms)
        .map_err(|e| TelemetryError::InvalidQuery(e.to_string()))?;
    for (id, kind, head) in snapshot(inner, series) {
        if kind == Kind::Str {
            continue;
        }
        let rows = chunk_rows(conn, id, range, false)?;
        let (lo, hi) = head.iter().fold((i64::MAX, i64::MIN), |(lo, hi), (ts, _)| {
            (lo.min(*ts), hi.max(*ts))
        });
        // Chunks the head overlaps are merged with it first, so that a
        // rewritten point counts once, with its newest value.
        let mut overlapped = Vec::new();
        let mut whole = Vec::new();
        for data in rows {
            let overlaps = !head.is_empty() && {
                let header = ChunkHeader::parse(&data)?;
                header.min_ts <= hi && header.max_ts >= lo
            };
            if overlaps {
                overlapped.extend(chunks::decode(data, range.from, range.to)?);
            } else {
                whole.push(Chunk::from_vec(data)?);
            }
        }
        add_chunks(&mut aggregator, &whole, range, interval_ms)?;
        if !head.is_empty() {
            let merged = chunks::merge(overlapped, head);
            for c in chunks::encode(kind, &merged, usize::MAX)? {
                aggregator.add_chunk(&c)?;
            }
        }
    }
    Ok(aggregator
        .finish()
        .into_iter()
        .map(|b| {
            let v = match agg {
                Agg::Avg => b.avg(),
                Agg::Min => b.min,
                Agg::Max => b.max,
                Agg::Sum => b.sum,
                Agg::Count => b.count as f64,
                Agg::First => b.first,
                Agg::Last => b.last,
            };
            (b.start, v)
        })
        .collect())
}

/// Points above which an aggregate is shared between threads: decoding
/// dominates long queries, and chunks decode independently.
const PARALLEL_POINTS: usize = 262_144;
/// Threads one query may use at most.
const MAX_QUERY_THREADS: usize = 4;

/// Adds time-ordered, non-overlapping chunks; a large set is split into
/// contiguous shares aggregated on scoped threads and merged in time order.
fn add_chunks(
    agg: &mut Aggregator,
    chunks: &[Chunk],
    range: Range,
    interval_ms: i64,
) -> Result<()> {
    let points: usize = chunks.iter().map(Chunk::len).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_QUERY_THREADS)
        .min(chunks.len());
    if threads < 2 || points < PARALLEL_POINTS {
        for c in chunks {
            agg.add_chunk(c)?;
        }
        return Ok(());
    }
    let mut shares = chunks.chunks(chunks.len().div_ceil(threads));
    let mine = shares.next().unwrap_or_default();
    let others: Vec<Result<Aggregator>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .map(|share| {
                s.spawn(move || {
                    let mut a = Aggregator::new(range.from, range.to, interval_ms)?;
                    for c in share {
                        a.add_chunk(c)?;
                    }
                    Ok(a)
                })
            })
            .collect();
        for c in mine {
            agg.add_chunk(c)?;
        }
        Ok::<_, TelemetryError>(
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(TelemetryError::storage("a query thread panicked")))
                })
                .collect(),
        )
    })?;
    for other in others {
        agg.merge(&other?)?;
    }
    Ok(())
}

pub fn latest(
    inner: &Inner,
    conn: &Connection,
    tenant: &TenantId,
    device: &DeviceId,
    keys: &[String],
) -> Result<BTreeMap<String, Point>> {
    let keys = if keys.is_empty() {
        inner.catalog.read().keys(tenant, device)
    } else {
        keys.to_vec()
    };
    let mut out = BTreeMap::new();
    for key in keys {
        let mut best: Option<(i64, TelemetryValue)> = None;
        let series = SeriesQuery::new(tenant, device, &key, Range::ALL);
        for (id, _, head) in snapshot(inner, &series) {
            let mut candidate = head.into_iter().max_by_key(|p| p.0);
            let newest = chunk_rows_last(conn, id)?;
            if let Some(data) = newest {
                let chunk = Chunk::from_vec(data)?;
                let stored = (chunk.max_ts(), chunks::owned(chunk.last_value()));
                // The head wins a tie: it is the later write.
                if candidate.as_ref().is_none_or(|c| c.0 < stored.0) {
                    candidate = Some(stored);
                }
            }
            if let Some(c) = candidate
                && best.as_ref().is_none_or(|b| b.0 < c.0)
            {
                best = Some(c);
            }
        }
        if let Some((ts, value)) = best {
            out.insert(key, Point { ts, value });
        }
    }
    Ok(out)
}

fn chunk_rows_last(conn: &Connection, id: SeriesId) -> Result<Option<Vec<u8>>> {
    let mut q = conn
        .prepare_cached("SELECT data FROM chunks WHERE series = ?1 ORDER BY min_ts DESC LIMIT 1")?;
    let mut rows = q.query([id as i64])?;
    match rows.next()? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

/// Devices with series or (unpurged) events.
pub fn devices(inner: &Inner, conn: &Connection, tenant: &TenantId) -> Result<Vec<DeviceId>> {
    let mut devices = inner.catalog.read().devices(tenant);
    let hidden = inner.horizons.read().tenant(tenant);
    let mut q = conn
        .prepare_cached("SELECT device, max(id) FROM events WHERE tenant = ?1 GROUP BY device")?;
    let rows = q.query_map([tenant.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (device, newest) = row?;
        if let Ok(d) = DeviceId::new(&device)
            && newest > hidden.of(&d)
        {
            devices.push(d);
        }
    }
    devices.sort();
    devices.dedup();
    Ok(devices)
}

pub fn events(inner: &Inner, conn: &Connection, query: &EventQuery) -> Result<Vec<Event>> {
    let EventQuery {
        tenant,
        device,
        event_type,
        range,
        after,
        limit,
    } = query;
    let mut q = conn.prepare_cached(
        "SELECT id, ts, type, payload FROM events
             WHERE tenant = ?1 AND device = ?2 AND ts >= ?3 AND ts < ?4 AND id > ?5
               AND (?6 IS NULL OR type = ?6)
             ORDER BY id LIMIT ?7",
    )?;
    let rows = q.query_map(
        params![
            tenant.as_str(),
            device.as_str(),
            range.from,
            range.to,
            after
                .unwrap_or(0)
                .max(inner.horizons.read().of(tenant, device)),
            event_type,
            *limit as i64
        ],
        |r| {
            Ok(Event {
                id: r.get(0)?,
                device: device.clone(),
                ts: r.get(1)?,
                event_type: r.get(2)?,
                payload: r.get(3)?,
            })
        },
    )?;
    rows.collect::<rusqlite::Result<Vec<Event>>>()
        .map_err(TelemetryError::from)
}

/// Streams a tenant's data: each series in (device, key) order a chunk at a
/// time, then the events in pages.
pub fn export(
    inner: &Inner,
    conn: &Connection,
    tenant: &TenantId,
    range: Range,
    sink: &mut dyn FnMut(ExportRecord) -> bool,
) -> Result<()> {
    let mut series: Vec<(DeviceId, std::sync::Arc<str>, SeriesId)> = {
        let catalog = inner.catalog.read();
        catalog
            .series
            .iter()
            .filter(|(_, s)| &s.tenant == tenant)
            .map(|(id, s)| (s.device.clone(), s.key.clone(), *id))
            .collect()
    };
    series.sort();
    for (device, key, id) in series {
        let head = {
            let catalog = inner.catalog.read();
            catalog
                .series
                .get(&id)
                .map(|s| s.head_in(range.from, range.to))
                .unwrap_or_default()
        };
        let mut head = chunks::merge(Vec::new(), head);
        let mut emit = |points: Vec<(i64, TelemetryValue)>| {
            points.into_iter().all(|(ts, value)| {
                sink(ExportRecord::Point {
                    device: device.clone(),
                    key: key.clone(),
                    point: Point { ts, value },
                })
            })
        };
        for data in chunk_rows(conn, id, range, false)? {
            let pts = chunks::decode(data, range.from, range.to)?;
            // Head points up to this chunk's end go out merged with it.
            let end = pts.last().map_or(i64::MIN, |p| p.0);
            let split = head.partition_point(|p| p.0 <= end);
            let rest = head.split_off(split);
            if !emit(chunks::merge(pts, std::mem::replace(&mut head, rest))) {
                return Ok(());
            }
        }
        if !emit(head) {
            return Ok(());
        }
    }
    let hidden = inner.horizons.read().tenant(tenant);
    let mut after = 0i64;
    loop {
        let mut q = conn.prepare_cached(
            "SELECT id, device, ts, type, payload FROM events
                 WHERE tenant = ?1 AND ts >= ?2 AND ts < ?3 AND id > ?4 ORDER BY id LIMIT 1000",
        )?;
        let rows = q.query_map(params![tenant.as_str(), range.from, range.to, after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let page = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        if page.is_empty() {
            return Ok(());
        }
        for (id, device, ts, event_type, payload) in page {
            after = id;
            let Ok(device) = DeviceId::new(&device) else {
                continue;
            };
            if id <= hidden.of(&device) {
                continue;
            }
            let record = ExportRecord::Event(Event {
                id,
                device,
                ts,
                event_type,
                payload,
            });
            if !sink(record) {
                return Ok(());
            }
        }
    }
}

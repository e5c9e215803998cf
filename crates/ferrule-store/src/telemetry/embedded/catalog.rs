//! What the telemetry store keeps in memory: every series, and each one's
//! head — its recent points, already durable in the log, not yet sealed
//! into a chunk.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ferrule_core::telemetry::TelemetryValue;
use ferrule_core::{DeviceId, TenantId};
use ferrule_tsdb::Kind;

pub type SeriesId = u64;

/// A device's keys → their series (one per kind seen).
type DeviceKeys = HashMap<Arc<str>, Vec<SeriesId>>;

/// A series' points as kept in memory and handed to readers.
pub type Points = Vec<(i64, TelemetryValue)>;

/// What an unsealed point counts towards its tenant's disk use until its
/// chunk replaces it: about its log record (timestamp and number, or the
/// string's bytes), so that a tenant sending long strings is not counted a
/// fraction of what its recent log takes.
pub fn point_cost(v: &TelemetryValue) -> usize {
    const POINT: usize = 16;
    match v {
        TelemetryValue::Text(s) => POINT + s.len(),
        _ => POINT,
    }
}

/// The kind a value is stored as.
pub fn kind_of(v: &TelemetryValue) -> Kind {
    match v {
        TelemetryValue::Number(_) => Kind::F64,
        TelemetryValue::Bool(_) => Kind::Bool,
        TelemetryValue::Text(_) => Kind::Str,
    }
}

/// One series: a key of a device, of one kind (a key that changes type
/// becomes two series, queried together).
#[derive(Debug)]
pub struct Series {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub key: Arc<str>,
    pub kind: Kind,
    /// Unsealed points in arrival order (usually time order).
    pub head: Head,
    /// When the head got its first point; sealing is due after a while.
    pub head_since: Option<Instant>,
    /// The first and last log batch with points in the head.
    pub head_min_seq: u64,
    pub head_max_seq: u64,
    /// Retention horizon: points before it are gone and not taken again.
    pub deleted_before: i64,
    /// What the head's points count towards the tenant's disk use (see
    /// [`point_cost`]).
    pub head_bytes: usize,
    /// The latest timestamp given to a server-stamped point: the next one
    /// goes at least a millisecond later, so two never overwrite each other.
    pub last_stamped: i64,
}

impl Series {
    pub fn new(tenant: TenantId, device: DeviceId, key: Arc<str>, kind: Kind) -> Self {
        Series {
            tenant,
            device,
            key,
            kind,
            head: Head::new(kind),
            head_since: None,
            head_min_seq: 0,
            head_max_seq: 0,
            deleted_before: i64::MIN,
            last_stamped: i64::MIN,
            head_bytes: 0,
        }
    }

    /// Adds a point committed in log batch `seq`.
    pub fn push(&mut self, seq: u64, ts: i64, value: TelemetryValue) {
        if self.head.is_empty() {
            self.head_since = Some(Instant::now());
            self.head_min_seq = seq;
        }
        self.head_max_seq = seq;
        self.head_bytes += point_cost(&value);
        let pushed = self.head.push(ts, value);
        debug_assert!(pushed, "a series only receives values of its kind");
    }

    /// Drops the head's points before `cutoff`; returns how many and what
    /// they counted.
    pub fn drop_before(&mut self, cutoff: i64) -> (usize, usize) {
        let before = self.head_bytes;
        let removed = self.head.drop_before(cutoff);
        if removed > 0 {
            self.head_bytes = self
                .head
                .points(|_| true)
                .iter()
                .map(|p| point_cost(&p.1))
                .sum();
        }
        (removed, before - self.head_bytes)
    }

    /// Empties the head (its points are sealed or purged); returns what it
    /// counted.
    pub fn clear_head(&mut self) -> usize {
        self.head.clear();
        self.head_since = None;
        std::mem::take(&mut self.head_bytes)
    }

    /// Head points in `[from, to)`.
    pub fn head_in(&self, from: i64, to: i64) -> Points {
        self.head.points(|ts| from <= ts && ts < to)
    }
}

/// Unsealed points of one series, kept by kind so that a number costs 16
/// bytes (timestamp and f64) rather than the 32 of a tagged value.
#[derive(Debug)]
pub enum Head {
    F64(Vec<(i64, f64)>),
    Bool(Vec<(i64, bool)>),
    Str(Vec<(i64, Box<str>)>),
}

impl Head {
    pub fn new(kind: Kind) -> Head {
        match kind {
            Kind::F64 => Head::F64(Vec::new()),
            Kind::Bool => Head::Bool(Vec::new()),
            Kind::Str => Head::Str(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Head::F64(v) => v.len(),
            Head::Bool(v) => v.len(),
            Head::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a point; false (and nothing added) for a value of another kind.
    fn push(&mut self, ts: i64, value: TelemetryValue) -> bool {
        match (self, value) {
            (Head::F64(v), TelemetryValue::Number(x)) => v.push((ts, x)),
            (Head::Bool(v), TelemetryValue::Bool(b)) => v.push((ts, b)),
            (Head::Str(v), TelemetryValue::Text(s)) => v.push((ts, s)),
            _ => return false,
        }
        true
    }

    /// The points whose timestamp passes `keep`, as values.
    pub fn points(&self, keep: impl Fn(i64) -> bool) -> Points {
        match self {
            Head::F64(v) => v
                .iter()
                .filter(|p| keep(p.0))
                .map(|&(ts, x)| (ts, TelemetryValue::Number(x)))
                .collect(),
            Head::Bool(v) => v
                .iter()
                .filter(|p| keep(p.0))
                .map(|&(ts, b)| (ts, TelemetryValue::Bool(b)))
                .collect(),
            Head::Str(v) => v
                .iter()
                .filter(|p| keep(p.0))
                .map(|(ts, s)| (*ts, TelemetryValue::Text(s.clone())))
                .collect(),
        }
    }

    /// Drops the points before `cutoff`; returns how many.
    pub fn drop_before(&mut self, cutoff: i64) -> usize {
        let before = self.len();
        match self {
            Head::F64(v) => v.retain(|p| p.0 >= cutoff),
            Head::Bool(v) => v.retain(|p| p.0 >= cutoff),
            Head::Str(v) => v.retain(|p| p.0 >= cutoff),
        }
        before - self.len()
    }

    /// Empties the head, giving its memory back.
    pub fn clear(&mut self) {
        *self = match self {
            Head::F64(_) => Head::F64(Vec::new()),
            Head::Bool(_) => Head::Bool(Vec::new()),
            Head::Str(_) => Head::Str(Vec::new()),
        };
    }
}

/// Every series, found by id or by (tenant, device, key).
#[derive(Debug, Default)]
pub struct Catalog {
    pub series: HashMap<SeriesId, Series>,
    /// tenant → device → key → series ids (one per kind seen).
    index: HashMap<TenantId, HashMap<DeviceId, DeviceKeys>>,
    /// Points in all heads.
    pub head_points: usize,
    pub next_id: SeriesId,
}

impl Catalog {
    pub fn insert(&mut self, id: SeriesId, series: Series) {
        self.index
            .entry(series.tenant.clone())
            .or_default()
            .entry(series.device.clone())
            .or_default()
            .entry(series.key.clone())
            .or_default()
            .push(id);
        self.next_id = self.next_id.max(id + 1);
        self.series.insert(id, series);
    }

    /// The series of `key` of a kind, if any.
    pub fn find(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        key: &str,
        kind: Kind,
    ) -> Option<SeriesId> {
        self.of_key(tenant, device, key)
            .iter()
            .copied()
            .find(|id| self.series.get(id).is_some_and(|s| s.kind == kind))
    }

    /// Every series of `key` (one per kind).
    pub fn of_key(&self, tenant: &TenantId, device: &DeviceId, key: &str) -> &[SeriesId] {
        self.index
            .get(tenant)
            .and_then(|d| d.get(device))
            .and_then(|k| k.get(key))
            .map_or(&[], Vec::as_slice)
    }

    /// A device's keys, sorted.
    pub fn keys(&self, tenant: &TenantId, device: &DeviceId) -> Vec<String> {
        let mut keys: Vec<String> = self
            .index
            .get(tenant)
            .and_then(|d| d.get(device))
            .map(|k| k.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Every series of a device.
    pub fn of_device(&self, tenant: &TenantId, device: &DeviceId) -> Vec<SeriesId> {
        self.index
            .get(tenant)
            .and_then(|d| d.get(device))
            .map(|k| k.values().flatten().copied().collect())
            .unwrap_or_default()
    }

    /// Every series of a tenant.
    pub fn of_tenant(&self, tenant: &TenantId) -> Vec<SeriesId> {
        self.index
            .get(tenant)
            .map(|d| {
                d.values()
                    .flat_map(|k| k.values().flatten())
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes a series out (a purge): it is no longer found, and its head
    /// no longer counts.
    pub fn remove(&mut self, id: SeriesId) -> Option<Series> {
        let s = self.series.remove(&id)?;
        self.head_points -= s.head.len();
        if let Some(devices) = self.index.get_mut(&s.tenant) {
            if let Some(keys) = devices.get_mut(&s.device) {
                if let Some(ids) = keys.get_mut(&s.key) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        keys.remove(&s.key);
                    }
                }
                if keys.is_empty() {
                    devices.remove(&s.device);
                }
            }
            if devices.is_empty() {
                self.index.remove(&s.tenant);
            }
        }
        Some(s)
    }

    /// Devices of a tenant with series, sorted.
    pub fn devices(&self, tenant: &TenantId) -> Vec<DeviceId> {
        let mut devices: Vec<DeviceId> = self
            .index
            .get(tenant)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default();
        devices.sort();
        devices
    }
}

//! The server's recent load, for `GET /api/v1/system` and the console's
//! overview: what each tenant's clients send per second and how fast its
//! disk use grows, against the capacity our benchmarks measured.
//!
//! Counting happens where messages pass anyway (the router's per-tenant
//! [`LoadCount`], the telemetry store's disk use per tenant), as counters
//! that only grow; a background task reads them every
//! [`SAMPLE_EVERY`] and keeps a short history per tenant, so a request
//! computes rates from two readings and never waits or walks data.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrule_bus::{LoadCount, Router};
use ferrule_core::TenantId;
use ferrule_store::telemetry::TelemetryStore;
use tokio_util::sync::CancellationToken;

/// How often the counters are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Message and point rates are over this much of the recent past.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Disk growth is over this much: telemetry is written raw, then sealed
/// into chunks many times smaller, so disk use rises and falls within
/// minutes; an hour smooths that into the trend a budget cares about.
pub const GROWTH_WINDOW: Duration = Duration::from_secs(3600);
/// Readings older than [`RATE_WINDOW`] are thinned to one per this much.
const COARSE_EVERY: Duration = Duration::from_secs(60);

/// The durable ingest one server sustained in our benchmarks:
/// docs/BENCHMARKS.md, "Telemetry", the row "durable ingest, MQTT 5 QoS 1,
/// 1,000 devices, 10 keys/message" (595,316 points/s on 2 vCPU, measured
/// 2026-11-25). Ingest is bound by one core there, so it is a fair yardstick
/// on most machines, not a promise for this one.
pub const BENCHMARKED_POINTS_PER_S: f64 = 595_316.0;
/// Where [`BENCHMARKED_POINTS_PER_S`] comes from, as the API states it.
pub const BENCHMARK_SOURCE: &str = "docs/BENCHMARKS.md#telemetry: durable ingest, MQTT 5 QoS 1, \
    1,000 devices, 10 keys/message, 2 vCPU (2026-11-25)";

/// One reading of a tenant's counters.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    load: LoadCount,
    disk_bytes: u64,
}

/// A tenant's recent load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantRates {
    pub messages_per_s: f64,
    pub points_per_s: f64,
    /// Growth of its disk use, per day, retention's deletions included;
    /// never negative (shrinking disk use fills no budget).
    pub bytes_per_day: f64,
}

impl TenantRates {
    /// Days until `used` reaches `budget` at this growth; `None` when there
    /// is no budget or the disk use does not grow.
    pub fn days_until_full(&self, used: u64, budget: Option<u64>) -> Option<f64> {
        let budget = budget?;
        if used >= budget {
            return Some(0.0);
        }
        (self.bytes_per_day > 0.0).then(|| round1((budget - used) as f64 / self.bytes_per_day))
    }
}

/// Readings of every tenant's counters, shared by handlers and the task
/// that takes them. Cheap to clone.
#[derive(Clone)]
pub struct LoadHistory(Arc<Inner>);

struct Inner {
    started: Instant,
    tenants: Mutex<HashMap<TenantId, VecDeque<Reading>>>,
}

impl Inner {
    fn tenants(&self) -> MutexGuard<'_, HashMap<TenantId, VecDeque<Reading>>> {
        // Readings stay consistent even if a holder panicked: each is
        // written whole.
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for LoadHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadHistory {
    pub fn new() -> Self {
        Self(Arc::new(Inner {
            started: Instant::now(),
            tenants: Mutex::new(HashMap::new()),
        }))
    }

    /// Time since the server started.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// Whether the counters have been read twice, so that rates are known
    /// (a tenant without readings then sent nothing).
    pub fn measured(&self) -> bool {
        self.uptime() >= 2 * SAMPLE_EVERY
    }

    /// Reads the counters every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn run(
        self,
        router: Arc<Router>,
        store: Arc<dyn TelemetryStore>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let readings = router.load().into_iter().map(|(tenant, load)| {
                let disk_bytes = store.disk_bytes(&tenant);
                (tenant, load, disk_bytes)
            });
            self.record(now, readings);
        }
    }

    /// Adds one reading per tenant; tenants not read this time (deleted)
    /// are forgotten.
    fn record(&self, at: Instant, readings: impl Iterator<Item = (TenantId, LoadCount, u64)>) {
        let mut tenants = self.0.tenants();
        let mut seen = HashMap::with_capacity(tenants.len());
        for (tenant, load, disk_bytes) in readings {
            let mut history = tenants.remove(&tenant).unwrap_or_default();
            history.push_back(Reading {
                at,
                load,
                disk_bytes,
            });
            thin(&mut history, at);
            seen.insert(tenant, history);
        }
        *tenants = seen;
    }

    /// Every tenant's recent rates (tenants with no reading yet, or only
    /// one, are absent: no rate is known).
    pub fn rates(&self) -> HashMap<TenantId, TenantRates> {
        let now = Instant::now();
        self.0
            .tenants()
            .iter()
            .filter_map(|(t, h)| Some((t.clone(), rates_of(h, now)?)))
            .collect()
    }

    /// One tenant's recent rates.
    pub fn rates_of(&self, tenant: &TenantId) -> Option<TenantRates> {
        rates_of(self.0.tenants().get(tenant)?, Instant::now())
    }
}

/// Keeps every reading of the last [`RATE_WINDOW`] (and a little more, so
/// that one reading spans the whole window), one per [`COARSE_EVERY`]
/// before it, none older than [`GROWTH_WINDOW`].
fn thin(history: &mut VecDeque<Reading>, now: Instant) {
    let age = |r: &Reading| now.saturating_duration_since(r.at);
    while history
        .front()
        .is_some_and(|r| age(r) > GROWTH_WINDOW + COARSE_EVERY)
    {
        history.pop_front();
    }
    let fine_from = RATE_WINDOW + SAMPLE_EVERY;
    let mut kept: VecDeque<Reading> = VecDeque::with_capacity(history.len());
    for r in history.drain(..) {
        let coarse = age(&r) > fine_from;
        match kept.back() {
            Some(last) if coarse && r.at.saturating_duration_since(last.at) < COARSE_EVERY => {}
            _ => kept.push_back(r),
        }
    }
    *history = kept;
}

fn rates_of(history: &VecDeque<Reading>, now: Instant) -> Option<TenantRates> {
    let newest = history.back()?;
    // The oldest reading inside the rate window, and the oldest of all.
    let window_start = history
        .iter()
        .find(|r| now.saturating_duration_since(r.at) <= RATE_WINDOW + SAMPLE_EVERY)?;
    let oldest = history.front()?;
    let per_s = |from: &Reading, a: u64, b: u64| {
        let dt = newest.at.saturating_duration_since(from.at).as_secs_f64();
        if dt > 0.0 {
            b.saturating_sub(a) as f64 / dt
        } else {
            0.0
        }
    };
    if std::ptr::eq(newest, oldest) {
        return None;
    }
    let growth = newest.disk_bytes.saturating_sub(oldest.disk_bytes);
    Some(TenantRates {
        messages_per_s: round1(per_s(
            window_start,
            window_start.load.messages,
            newest.load.messages,
        )),
        points_per_s: round1(per_s(
            window_start,
            window_start.load.points,
            newest.load.points,
        )),
        bytes_per_day: (per_s(oldest, 0, growth) * 86_400.0).round(),
    })
}

/// One decimal: rates read as "12.5 /s", not as float noise.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The process's resident memory, from `/proc/self/status` (Linux); `None`
/// elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    fn reading(t0: Instant, secs: u64, messages: u64, points: u64, disk: u64) -> Reading {
        Reading {
            at: t0 + Duration::from_secs(secs),
            load: LoadCount { messages, points },
            disk_bytes: disk,
        }
    }

    #[test]
    fn rates_come_from_the_window_and_growth_from_the_longer_past() {
        let t0 = Instant::now();
        let mut h = VecDeque::new();
        // An hour ago the disk held 0; over the last minute 100 msgs/s.
        h.push_back(reading(t0, 0, 0, 0, 0));
        h.push_back(reading(t0, 3540, 1_000, 10_000, 86_400 * 1000));
        h.push_back(reading(t0, 3600, 7_000, 70_000, 3600 * 1000));
        let now = t0 + Duration::from_secs(3600);
        // Growth is over the whole hour: 3.6 MB/h = 1000 B/s.
        let r = rates_of(&h, now).unwrap();
        assert_eq!(r.messages_per_s, 100.0);
        assert_eq!(r.points_per_s, 1_000.0);
        assert_eq!(r.bytes_per_day, 86_400_000.0);
        assert_eq!(r.days_until_full(3_600_000, Some(90_000_000)), Some(1.0));
        assert_eq!(r.days_until_full(3_600_000, None), None);
        assert_eq!(r.days_until_full(100, Some(100)), Some(0.0));
    }

    #[test]
    fn a_shrinking_disk_never_fills() {
        let t0 = Instant::now();
        let h = VecDeque::from([reading(t0, 0, 0, 0, 5000), reading(t0, 10, 10, 10, 10)]);
        let r = rates_of(&h, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(r.bytes_per_day, 0.0);
        assert_eq!(r.days_until_full(10, Some(1_000_000)), None);
    }

    #[test]
    fn one_reading_is_no_rate() {
        let t0 = Instant::now();
        assert_eq!(
            rates_of(&VecDeque::from([reading(t0, 0, 5, 5, 5)]), t0),
            None
        );
    }

    #[test]
    fn history_is_thinned_and_bounded() {
        let t0 = Instant::now();
        let mut h = VecDeque::new();
        // Three hours of readings every 2 s.
        for i in 0..(3 * 3600 / 2) {
            h.push_back(reading(t0, i * 2, i, i, i));
            thin(&mut h, t0 + Duration::from_secs(i * 2));
        }
        // ~31 fine readings and ~60 coarse ones.
        assert!(h.len() <= 100, "{} readings kept", h.len());
        let now = t0 + Duration::from_secs(3 * 3600 - 2);
        let oldest = now.duration_since(h.front().unwrap().at);
        assert!(oldest <= GROWTH_WINDOW + COARSE_EVERY, "{oldest:?}");
        assert!(oldest >= GROWTH_WINDOW - COARSE_EVERY, "{oldest:?}");
        let r = rates_of(&h, now).unwrap();
        assert_eq!(r.messages_per_s, 0.5);
    }

    #[test]
    fn deleted_tenants_are_forgotten() {
        let history = LoadHistory::new();
        let t0 = Instant::now();
        let load = LoadCount::default();
        history.record(
            t0,
            [(tenant("a"), load, 0), (tenant("b"), load, 0)].into_iter(),
        );
        history.record(t0 + SAMPLE_EVERY, [(tenant("a"), load, 10)].into_iter());
        let rates = history.rates();
        assert!(rates.contains_key(&tenant("a")));
        assert!(!rates.contains_key(&tenant("b")));
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
        }
    }
}

//! The conformance suite every [`TelemetryStore`] backend must pass.
//!
//! Instantiate it in a backend's tests with
//! `ferrule_store::telemetry_store_conformance!(|| async { (subject, guard) })`,
//! where `subject` is a [`Subject`] (the store, and the [`Durability`] it
//! reports its commits to) and `guard` anything that must outlive the store
//! (a temp dir, a dropped-at-end database). Each case gets a fresh store
//! and keeps to a few points, so the suite runs in moments.

use std::sync::Arc;

use bytes::Bytes;
use ferrule_core::durability::{Durability, Ledger, Ticket};
use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};

use super::{
    Agg, Deleted, EventQuery, ExportRecord, NewEvent, Order, Point, PurgeScope, Range,
    RetentionSettings, SeriesQuery, TelemetryError, TelemetryStore,
};

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! telemetry_store_conformance {
    ($factory:expr) => {
        $crate::telemetry_store_conformance!(@cases $factory;
            an_acknowledged_append_is_readable,
            a_rewritten_timestamp_keeps_the_last_value,
            raw_reads_a_half_open_range_from_either_end,
            aggregates_fill_only_buckets_with_points,
            aggregates_count_bools_and_skip_strings,
            latest_and_keys_cover_every_kind,
            events_filter_by_type_and_range_and_page_by_id,
            delete_before_removes_only_what_is_older,
            retention_settings_are_kept_per_tenant,
            a_purged_device_leaves_nothing_and_starts_empty,
            a_purged_tenant_leaves_nothing_not_even_its_settings,
            tenants_are_isolated,
            export_streams_a_tenants_points_then_events,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (subject, _guard) = ($factory)().await;
                $crate::telemetry::conformance::$case(&subject).await;
            }
        )*
    };
}

/// A backend under test: the store, and where it reports commits.
pub struct Subject {
    pub store: Arc<dyn TelemetryStore>,
    pub durability: Durability,
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn device(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn reading(key: &str, ts: i64, value: TelemetryValue) -> Reading {
    Reading {
        ts,
        key: key.into(),
        value,
        server_stamped: false,
    }
}

fn number(key: &str, ts: i64, v: f64) -> Reading {
    reading(key, ts, TelemetryValue::Number(v))
}

fn event(ts: i64, event_type: &str) -> NewEvent {
    NewEvent {
        ts,
        event_type: event_type.into(),
        payload: Bytes::from(format!("{{\"at\":{ts}}}")),
    }
}

impl Subject {
    /// Appends and waits until the store reports the write committed.
    async fn put(&self, t: &TenantId, d: &DeviceId, readings: Vec<Reading>, events: Vec<NewEvent>) {
        let appended = self.store.append(t, d, readings, events).unwrap();
        self.durability
            .wait(Ticket::on(Ledger::Telemetry, appended.ticket))
            .await;
    }

    /// Points `ts` of `key` whose value is their time.
    async fn put_times(
        &self,
        t: &TenantId,
        d: &DeviceId,
        key: &str,
        ts: impl Iterator<Item = i64>,
    ) {
        let readings = ts.map(|ts| number(key, ts, ts as f64)).collect();
        self.put(t, d, readings, Vec::new()).await;
    }

    async fn raw(
        &self,
        t: &TenantId,
        d: &DeviceId,
        key: &str,
        range: Range,
        order: Order,
        limit: usize,
    ) -> Vec<Point> {
        let series = SeriesQuery::new(t, d, key, range);
        self.store.raw(series, order, limit).await.unwrap()
    }

    async fn times(&self, t: &TenantId, d: &DeviceId, key: &str) -> Vec<i64> {
        self.raw(t, d, key, Range::ALL, Order::Oldest, usize::MAX)
            .await
            .iter()
            .map(|p| p.ts)
            .collect()
    }

    async fn aggregate(
        &self,
        t: &TenantId,
        d: &DeviceId,
        key: &str,
        range: Range,
        interval_ms: i64,
        agg: Agg,
    ) -> Result<Vec<(i64, f64)>, TelemetryError> {
        let series = SeriesQuery::new(t, d, key, range);
        self.store.aggregate(series, interval_ms, agg).await
    }

    async fn event_times(&self, t: &TenantId, d: &DeviceId) -> Vec<i64> {
        self.store
            .events(EventQuery::new(t, d, Range::ALL, 1000))
            .await
            .unwrap()
            .iter()
            .map(|e| e.ts)
            .collect()
    }

    /// Nothing of `d` answers any query.
    async fn assert_empty(&self, t: &TenantId, d: &DeviceId) {
        assert!(self.times(t, d, "x").await.is_empty());
        assert!(self.event_times(t, d).await.is_empty());
        assert!(self.store.keys(t, d).await.unwrap().is_empty());
        assert!(self.store.latest(t, d, &[]).await.unwrap().is_empty());
    }
}

fn values(points: &[Point]) -> Vec<(i64, f64)> {
    points
        .iter()
        .map(|p| match p.value {
            TelemetryValue::Number(v) => (p.ts, v),
            ref other => panic!("expected a number, got {other:?}"),
        })
        .collect()
}

pub async fn an_acknowledged_append_is_readable(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    let first = s
        .store
        .append(&t, &d, vec![number("x", 1, 1.0)], Vec::new())
        .unwrap();
    let second = s
        .store
        .append(&t, &d, vec![number("x", 2, 2.0)], vec![event(2, "boot")])
        .unwrap();
    // Writes are numbered in the order they were appended.
    assert!(
        0 < first.ticket && first.ticket < second.ticket,
        "{first:?} {second:?}"
    );
    s.durability
        .wait(Ticket::on(Ledger::Telemetry, second.ticket))
        .await;
    assert_eq!(
        values(&s.raw(&t, &d, "x", Range::ALL, Order::Oldest, 10).await),
        [(1, 1.0), (2, 2.0)]
    );
    assert_eq!(s.event_times(&t, &d).await, [2]);
    assert_eq!(s.store.devices(&t).await.unwrap(), [d]);
    assert!(s.store.disk_bytes(&t) > 0);
    assert_eq!(s.store.disk_bytes(&tenant("other")), 0);
}

pub async fn a_rewritten_timestamp_keeps_the_last_value(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    s.put(
        &t,
        &d,
        vec![number("x", 5, 1.0), number("x", 6, 1.0)],
        Vec::new(),
    )
    .await;
    s.put(&t, &d, vec![number("x", 5, 2.0)], Vec::new()).await;
    assert_eq!(
        values(&s.raw(&t, &d, "x", Range::ALL, Order::Oldest, 10).await),
        [(5, 2.0), (6, 1.0)]
    );
    // Server-stamped points of one millisecond are moved apart, never lost.
    let stamped = |v| Reading {
        server_stamped: true,
        ..number("y", 100, v)
    };
    s.put(&t, &d, vec![stamped(1.0), stamped(2.0)], Vec::new())
        .await;
    s.put(&t, &d, vec![stamped(3.0)], Vec::new()).await;
    let ys = s.raw(&t, &d, "y", Range::ALL, Order::Oldest, 10).await;
    assert_eq!(ys.len(), 3, "{ys:?}");
    assert!(ys.windows(2).all(|w| w[0].ts < w[1].ts), "{ys:?}");
    assert_eq!(ys.last().unwrap().value, TelemetryValue::Number(3.0));
}

pub async fn raw_reads_a_half_open_range_from_either_end(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    // Out of order, in two appends.
    s.put_times(&t, &d, "x", (0..5).rev().map(|i| i * 2)).await;
    s.put_times(&t, &d, "x", (1..10).step_by(2)).await;
    let times = |p: Vec<Point>| p.iter().map(|p| p.ts).collect::<Vec<_>>();
    let range = Range { from: 2, to: 7 };
    assert_eq!(
        times(s.raw(&t, &d, "x", range, Order::Oldest, 100).await),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(
        times(s.raw(&t, &d, "x", range, Order::Oldest, 3).await),
        [2, 3, 4]
    );
    // From the newest end, still in ascending order.
    assert_eq!(
        times(s.raw(&t, &d, "x", range, Order::Newest, 3).await),
        [4, 5, 6]
    );
    // The next page starts after the last point seen.
    let next = Range { from: 5, to: 7 };
    assert_eq!(
        times(s.raw(&t, &d, "x", next, Order::Oldest, 3).await),
        [5, 6]
    );
    assert!(
        s.raw(&t, &d, "x", Range { from: 20, to: 30 }, Order::Oldest, 3)
            .await
            .is_empty()
    );
    assert!(
        s.raw(&t, &d, "nope", Range::ALL, Order::Oldest, 3)
            .await
            .is_empty()
    );
}

pub async fn aggregates_fill_only_buckets_with_points(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    let points = [
        (0, 1.0),
        (1, 2.0),
        (4, 3.0),
        (10, 10.0),
        (11, 20.0),
        (25, 7.0),
    ];
    let readings = points.iter().map(|&(ts, v)| number("x", ts, v)).collect();
    s.put(&t, &d, readings, Vec::new()).await;
    let range = Range { from: 0, to: 20 };
    for (agg, want) in [
        (Agg::Avg, [(0, 2.0), (10, 15.0)]),
        (Agg::Min, [(0, 1.0), (10, 10.0)]),
        (Agg::Max, [(0, 3.0), (10, 20.0)]),
        (Agg::Sum, [(0, 6.0), (10, 30.0)]),
        (Agg::Count, [(0, 3.0), (10, 2.0)]),
        (Agg::First, [(0, 1.0), (10, 10.0)]),
        (Agg::Last, [(0, 3.0), (10, 20.0)]),
    ] {
        // Bucket 5..10 has no point and is left out; 25 is out of range.
        assert_eq!(
            s.aggregate(&t, &d, "x", range, 5, agg).await.unwrap(),
            want,
            "{agg:?}"
        );
    }
    // Buckets start at the range's start.
    assert_eq!(
        s.aggregate(&t, &d, "x", Range { from: 1, to: 12 }, 10, Agg::Count)
            .await
            .unwrap(),
        [(1, 3.0), (11, 1.0)]
    );
    assert!(matches!(
        s.aggregate(&t, &d, "x", range, 0, Agg::Avg).await,
        Err(TelemetryError::InvalidQuery(_))
    ));
}

pub async fn aggregates_count_bools_and_skip_strings(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    let readings = vec![
        reading("on", 0, TelemetryValue::Bool(true)),
        reading("on", 1, TelemetryValue::Bool(false)),
        reading("on", 2, TelemetryValue::Bool(true)),
        reading("name", 0, TelemetryValue::Text("pump".into())),
    ];
    s.put(&t, &d, readings, Vec::new()).await;
    let all = Range { from: 0, to: 10 };
    assert_eq!(
        s.aggregate(&t, &d, "on", all, 10, Agg::Sum).await.unwrap(),
        [(0, 2.0)]
    );
    assert!(
        s.aggregate(&t, &d, "name", all, 10, Agg::Count)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn latest_and_keys_cover_every_kind(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    s.put(
        &t,
        &d,
        vec![
            number("temp", 1, 20.0),
            number("temp", 3, 22.0),
            number("temp", 2, 21.0),
            reading("on", 1, TelemetryValue::Bool(true)),
            reading("name", 1, TelemetryValue::Text("pump".into())),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(s.store.keys(&t, &d).await.unwrap(), ["name", "on", "temp"]);
    let latest = s.store.latest(&t, &d, &[]).await.unwrap();
    assert_eq!(latest.len(), 3);
    assert_eq!(
        latest["temp"],
        Point {
            ts: 3,
            value: TelemetryValue::Number(22.0)
        }
    );
    assert_eq!(latest["on"].value, TelemetryValue::Bool(true));
    assert_eq!(latest["name"].value, TelemetryValue::Text("pump".into()));
    let some = s
        .store
        .latest(&t, &d, &["temp".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(some.keys().collect::<Vec<_>>(), ["temp"]);
}

pub async fn events_filter_by_type_and_range_and_page_by_id(s: &Subject) {
    let (t, d) = (tenant("acme"), device("d1"));
    let events = (0..6)
        .map(|ts| event(ts, if ts % 2 == 0 { "boot" } else { "alarm" }))
        .collect();
    s.put(&t, &d, Vec::new(), events).await;
    let page = |after, limit| {
        s.store.events(EventQuery {
            after,
            ..EventQuery::new(&t, &d, Range::ALL, limit)
        })
    };
    let first = page(None, 4).await.unwrap();
    assert_eq!(first.iter().map(|e| e.ts).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(first[1].event_type, "alarm");
    assert_eq!(first[1].payload, b"{\"at\":1}");
    assert_eq!(first[1].device, d);
    let rest = page(Some(first[3].id), 4).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.ts).collect::<Vec<_>>(), [4, 5]);
    let boots = s
        .store
        .events(EventQuery {
            event_type: Some("boot".into()),
            ..EventQuery::new(&t, &d, Range { from: 1, to: 5 }, 10)
        })
        .await
        .unwrap();
    assert_eq!(boots.iter().map(|e| e.ts).collect::<Vec<_>>(), [2, 4]);
}

pub async fn delete_before_removes_only_what_is_older(s: &Subject) {
    let (t, d, other) = (tenant("acme"), device("d1"), device("d2"));
    s.put_times(&t, &d, "x", 0..10).await;
    s.put(&t, &d, Vec::new(), vec![event(0, "boot"), event(5, "boot")])
        .await;
    s.put_times(&t, &other, "x", 0..10).await;
    let deleted = s.store.delete_before(&t, &d, 5).await.unwrap();
    assert_eq!(
        deleted,
        Deleted {
            points: 5,
            events: 1
        }
    );
    assert_eq!(s.times(&t, &d, "x").await, [5, 6, 7, 8, 9]);
    assert_eq!(s.event_times(&t, &d).await, [5]);
    assert_eq!(s.times(&t, &other, "x").await.len(), 10);
    // Sealed data obeys it too.
    s.store.seal_all().await.unwrap();
    let deleted = s.store.delete_before(&t, &d, 7).await.unwrap();
    assert_eq!(deleted.points, 2);
    assert_eq!(s.times(&t, &d, "x").await, [7, 8, 9]);
}

pub async fn retention_settings_are_kept_per_tenant(s: &Subject) {
    let (a, b) = (tenant("acme"), tenant("beta"));
    assert_eq!(
        s.store.retention(&a).await.unwrap(),
        RetentionSettings::default()
    );
    let settings = RetentionSettings {
        default_days: Some(30),
        profiles: [("fast".to_owned(), 2)].into(),
        disk_budget_bytes: Some(1 << 20),
        disk_budget_ceiling_bytes: Some(1 << 30),
    };
    s.store.set_retention(&a, settings.clone()).await.unwrap();
    assert_eq!(s.store.retention(&a).await.unwrap(), settings);
    assert_eq!(
        s.store.retention(&b).await.unwrap(),
        RetentionSettings::default()
    );
}

pub async fn a_purged_device_leaves_nothing_and_starts_empty(s: &Subject) {
    let (t, d, other) = (tenant("acme"), device("d1"), device("d2"));
    s.put_times(&t, &d, "x", 0..5).await;
    s.put(&t, &d, Vec::new(), vec![event(0, "boot")]).await;
    s.store.seal_all().await.unwrap();
    s.put_times(&t, &d, "x", 5..8).await;
    s.put_times(&t, &other, "x", 0..3).await;
    let before = s.store.disk_bytes(&t);
    s.store
        .purge(PurgeScope::Device(t.clone(), d.clone()))
        .unwrap()
        .done()
        .await
        .unwrap();
    s.assert_empty(&t, &d).await;
    assert_eq!(
        s.store.devices(&t).await.unwrap(),
        std::slice::from_ref(&other)
    );
    assert!(s.store.disk_bytes(&t) < before);
    assert_eq!(s.times(&t, &other, "x").await, [0, 1, 2]);
    // A device created again under the id starts empty.
    s.put_times(&t, &d, "x", 100..101).await;
    assert_eq!(s.times(&t, &d, "x").await, [100]);
}

pub async fn a_purged_tenant_leaves_nothing_not_even_its_settings(s: &Subject) {
    let (t, keep, d) = (tenant("acme"), tenant("beta"), device("d1"));
    let settings = RetentionSettings {
        default_days: Some(3),
        ..RetentionSettings::default()
    };
    for tenant in [&t, &keep] {
        s.store
            .set_retention(tenant, settings.clone())
            .await
            .unwrap();
        s.put_times(tenant, &d, "x", 0..5).await;
        s.put(tenant, &d, Vec::new(), vec![event(0, "boot")]).await;
    }
    s.store
        .purge(PurgeScope::Tenant(t.clone()))
        .unwrap()
        .done()
        .await
        .unwrap();
    s.assert_empty(&t, &d).await;
    assert!(s.store.devices(&t).await.unwrap().is_empty());
    assert_eq!(s.store.disk_bytes(&t), 0);
    assert_eq!(
        s.store.retention(&t).await.unwrap(),
        RetentionSettings::default()
    );
    assert_eq!(s.store.retention(&keep).await.unwrap(), settings);
    assert_eq!(s.times(&keep, &d, "x").await.len(), 5);
}

pub async fn tenants_are_isolated(s: &Subject) {
    let (a, b, d) = (tenant("acme"), tenant("beta"), device("d1"));
    s.put(&a, &d, vec![number("x", 1, 1.0)], vec![event(1, "a")])
        .await;
    s.put(&b, &d, vec![number("y", 2, 2.0)], vec![event(2, "b")])
        .await;
    assert_eq!(s.store.keys(&a, &d).await.unwrap(), ["x"]);
    assert_eq!(s.store.keys(&b, &d).await.unwrap(), ["y"]);
    assert!(s.times(&a, &d, "y").await.is_empty());
    assert!(
        s.aggregate(&a, &d, "y", Range { from: 0, to: 10 }, 10, Agg::Count)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.event_times(&a, &d).await, [1]);
    assert_eq!(s.store.latest(&b, &d, &[]).await.unwrap().len(), 1);
    // Retention and deletion of one tenant's device leave the other's.
    s.store.delete_before(&a, &d, i64::MAX).await.unwrap();
    assert!(s.times(&a, &d, "x").await.is_empty());
    assert_eq!(s.times(&b, &d, "y").await, [2]);
    assert_eq!(s.event_times(&b, &d).await, [2]);
}

pub async fn export_streams_a_tenants_points_then_events(s: &Subject) {
    let (a, b, d) = (tenant("acme"), tenant("beta"), device("d1"));
    s.put(
        &a,
        &d,
        vec![number("x", 1, 1.0), number("x", 2, 2.0)],
        vec![event(1, "boot")],
    )
    .await;
    s.put(&b, &d, vec![number("x", 3, 3.0)], vec![event(3, "boot")])
        .await;
    let mut records = Vec::new();
    s.store
        .export(&a, Range::ALL, &mut |r| {
            records.push(r);
            true
        })
        .unwrap();
    let summary: Vec<_> = records
        .iter()
        .map(|r| match r {
            ExportRecord::Point { key, point, .. } => format!("{key}@{}", point.ts),
            ExportRecord::Event(e) => format!("{}@{}", e.event_type, e.ts),
        })
        .collect();
    assert_eq!(summary, ["x@1", "x@2", "boot@1"]);
    // A sink that stops ends the export.
    let mut taken = 0;
    s.store
        .export(&a, Range::ALL, &mut |_| {
            taken += 1;
            false
        })
        .unwrap();
    assert_eq!(taken, 1);
}

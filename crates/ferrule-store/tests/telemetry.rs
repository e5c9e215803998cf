//! The embedded telemetry store against a naive model: what goes in comes
//! out (last write per timestamp wins), before and after sealing, across
//! restarts, and retention removes exactly what is older than its cutoff.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};
use ferrule_core::{Durability, Ledger, Ticket};
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use ferrule_store::telemetry::{
    Agg, EventQuery, NewEvent, Order, Range, SeriesQuery, TelemetryStore,
};
use proptest::prelude::*;

fn ids() -> (TenantId, DeviceId) {
    (TenantId::new("t1").unwrap(), DeviceId::new("d1").unwrap())
}

fn open(dir: &std::path::Path) -> (Arc<EmbeddedTelemetry>, Durability) {
    open_with(dir, TelemetryOptions::default())
}

fn open_with(
    dir: &std::path::Path,
    options: TelemetryOptions,
) -> (Arc<EmbeddedTelemetry>, Durability) {
    let durability = Durability::default();
    let store = EmbeddedTelemetry::open(dir, options, durability.clone()).unwrap();
    (Arc::new(store), durability)
}

async fn put(store: &EmbeddedTelemetry, durability: &Durability, key: &str, pts: &[(i64, f64)]) {
    let (t, d) = ids();
    let readings = pts
        .iter()
        .map(|(ts, v)| Reading {
            server_stamped: false,
            ts: *ts,
            key: key.into(),
            value: TelemetryValue::Number(*v),
        })
        .collect();
    let appended = store.append(&t, &d, readings, Vec::new()).unwrap();
    durability
        .wait(Ticket::on(Ledger::Telemetry, appended.ticket))
        .await;
}

async fn all(store: &EmbeddedTelemetry, key: &str) -> Vec<(i64, f64)> {
    let (t, d) = ids();
    store
        .raw(
            SeriesQuery::new(&t, &d, key, Range::ALL),
            Order::Oldest,
            usize::MAX,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|p| match p.value {
            TelemetryValue::Number(v) => (p.ts, v),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Naive buckets `[from + i·w, …)` over a last-write-wins model.
fn naive(model: &BTreeMap<i64, f64>, from: i64, to: i64, w: i64, agg: Agg) -> Vec<(i64, f64)> {
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (&ts, &v) in model.range(from..to) {
        buckets
            .entry(from + (ts - from) / w * w)
            .or_default()
            .push(v);
    }
    buckets
        .into_iter()
        .map(|(start, vs)| {
            let v = match agg {
                Agg::Avg => vs.iter().sum::<f64>() / vs.len() as f64,
                Agg::Sum => vs.iter().sum(),
                Agg::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
                Agg::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Agg::Count => vs.len() as f64,
                Agg::First => vs[0],
                Agg::Last => *vs.last().unwrap(),
            };
            (start, v)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Batches of points (out of order, rewrites of earlier timestamps),
    /// sealed at random moments; every aggregate over random ranges and
    /// bucket widths (cutting through chunks) equals the naive answer.
    #[test]
    fn aggregates_match_a_naive_computation(
        batches in prop::collection::vec(
            (prop::collection::vec((0i64..20_000, -1000i32..1000), 1..400), any::<bool>()),
            1..8,
        ),
        queries in prop::collection::vec((0i64..120_000, 1i64..130_000, 1i64..20_000), 1..6),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            // Small chunks, so that ranges and buckets cut through many.
            let options = TelemetryOptions { chunk_points: 64, ..TelemetryOptions::default() };
            let (store, durability) = open_with(dir.path(), options);
            let mut model = BTreeMap::new();
            for (i, (pts, seal)) in batches.iter().enumerate() {
                // Batch i covers [15000·i, 15000·i + 20000): neighbours
                // overlap a little, so sealing makes several chunks, some
                // merged with late points, and queries cut through them.
                let base = 15_000 * i as i64;
                let pts: Vec<(i64, f64)> = pts.iter().map(|(t, v)| (base + *t, f64::from(*v) / 10.0)).collect();
                put(&store, &durability, "k", &pts).await;
                for (t, v) in &pts {
                    model.insert(*t, *v);
                }
                if *seal {
                    store.seal_all().await.unwrap();
                }
            }
            let (t, d) = ids();
            let got = all(&store, "k").await;
            let want: Vec<(i64, f64)> = model.iter().map(|(t, v)| (*t, *v)).collect();
            prop_assert_eq!(got, want);
            for (from, len, w) in &queries {
                let to = from + len;
                for agg in [Agg::Avg, Agg::Min, Agg::Max, Agg::Sum, Agg::Count, Agg::First, Agg::Last] {
                    let got = store.aggregate(SeriesQuery::new(&t, &d, "k", Range { from: *from, to }), *w, agg).await.unwrap();
                    let want = naive(&model, *from, to, *w, agg);
                    prop_assert_eq!(got.len(), want.len(), "{:?} buckets", agg);
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert_eq!(g.0, w.0);
                        prop_assert!(close(g.1, w.1), "{:?}: {} vs {}", agg, g.1, w.1);
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn unsealed_points_survive_a_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let pts: Vec<(i64, f64)> = (0..1000).map(|i| (i * 1000, i as f64)).collect();
    {
        let (store, durability) = open(dir.path());
        put(&store, &durability, "a", &pts[..600]).await;
        store.seal_all().await.unwrap();
        put(&store, &durability, "a", &pts[500..]).await;
        // No close: the process "dies" with 400 points only in the log.
        std::mem::forget(store);
    }
    let (store, _) = open(dir.path());
    assert_eq!(all(&store, "a").await, pts);
    store.seal_all().await.unwrap();
    assert_eq!(
        all(&store, "a").await,
        pts,
        "sealing the replay adds nothing twice"
    );
    assert_eq!(store.head_points(), 0);
    store.close().await.unwrap();
    let (store, _) = open(dir.path());
    assert_eq!(all(&store, "a").await, pts);
}

#[tokio::test]
async fn retention_deletes_exactly_what_is_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let (t, d) = ids();
    let pts: Vec<(i64, f64)> = (0..30_000).map(|i| (i * 10, i as f64)).collect();
    let cutoff = 123_455; // inside a sealed chunk, not on a point
    {
        let (store, durability) = open(dir.path());
        put(&store, &durability, "a", &pts[..20_000]).await;
        store.seal_all().await.unwrap();
        put(&store, &durability, "a", &pts[20_000..]).await;
        let old_event = NewEvent {
            ts: 5,
            event_type: "boot".into(),
            payload: "{}".into(),
        };
        let new_event = NewEvent {
            ts: cutoff + 1,
            event_type: "boot".into(),
            payload: "{}".into(),
        };
        let a = store
            .append(&t, &d, Vec::new(), vec![old_event, new_event])
            .unwrap();
        durability
            .wait(Ticket::on(Ledger::Telemetry, a.ticket))
            .await;
        let deleted = store.delete_before(&t, &d, cutoff).await.unwrap();
        let expired = pts.iter().filter(|p| p.0 < cutoff).count() as u64;
        assert_eq!(deleted.points, expired);
        assert_eq!(deleted.events, 1);
        let kept: Vec<(i64, f64)> = pts.iter().copied().filter(|p| p.0 >= cutoff).collect();
        assert_eq!(all(&store, "a").await, kept);
        std::mem::forget(store);
    }
    // The log still holds expired points: a restart must not bring them back.
    let (store, _) = open(dir.path());
    let kept: Vec<(i64, f64)> = pts.iter().copied().filter(|p| p.0 >= cutoff).collect();
    assert_eq!(all(&store, "a").await, kept);
    let events = store
        .events(EventQuery::new(&t, &d, Range::ALL, 10))
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.ts).collect::<Vec<_>>(),
        vec![cutoff + 1]
    );
}

#[tokio::test]
async fn latest_keys_kinds_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let (store, durability) = open(dir.path());
    let (t, d) = ids();
    let readings = vec![
        Reading {
            server_stamped: false,
            ts: 10,
            key: "temp".into(),
            value: TelemetryValue::Number(20.5),
        },
        Reading {
            server_stamped: false,
            ts: 20,
            key: "temp".into(),
            value: TelemetryValue::Number(21.0),
        },
        Reading {
            server_stamped: false,
            ts: 20,
            key: "on".into(),
            value: TelemetryValue::Bool(true),
        },
        Reading {
            server_stamped: false,
            ts: 30,
            key: "fw".into(),
            value: TelemetryValue::Text("1.2.3".into()),
        },
    ];
    let a = store.append(&t, &d, readings, Vec::new()).unwrap();
    durability
        .wait(Ticket::on(Ledger::Telemetry, a.ticket))
        .await;
    store.seal_all().await.unwrap();
    let late = vec![Reading {
        server_stamped: false,
        ts: 5,
        key: "temp".into(),
        value: TelemetryValue::Number(1.0),
    }];
    let a = store.append(&t, &d, late, Vec::new()).unwrap();
    durability
        .wait(Ticket::on(Ledger::Telemetry, a.ticket))
        .await;

    assert_eq!(store.keys(&t, &d).await.unwrap(), vec!["fw", "on", "temp"]);
    let latest = store.latest(&t, &d, &[]).await.unwrap();
    assert_eq!(latest["temp"].ts, 20, "a late point is not the latest");
    assert_eq!(latest["fw"].value, TelemetryValue::Text("1.2.3".into()));
    let newest = store
        .raw(
            SeriesQuery::new(&t, &d, "temp", Range::ALL),
            Order::Newest,
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|p| p.ts).collect::<Vec<_>>(),
        vec![10, 20]
    );

    let mut exported = Vec::new();
    store
        .export(&t, Range::ALL, &mut |r| {
            exported.push(r);
            true
        })
        .unwrap();
    assert_eq!(exported.len(), 5);
    // Another tenant sees nothing.
    let other = TenantId::new("t2").unwrap();
    assert!(store.keys(&other, &d).await.unwrap().is_empty());
}

/// A long series is aggregated on several threads (above 262,144 points);
/// the merged buckets equal the naive computation.
#[tokio::test]
async fn a_long_series_aggregates_on_threads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, durability) = open(dir.path());
    let pts: Vec<(i64, f64)> = (0..300_000i64)
        .map(|i| (i * 1000, ((i * 7919) % 2001 - 1000) as f64))
        .collect();
    for piece in pts.chunks(50_000) {
        put(&store, &durability, "k", piece).await;
    }
    store.seal_all().await.unwrap();
    let model: BTreeMap<i64, f64> = pts.iter().copied().collect();
    let (t, d) = ids();
    let range = Range {
        from: 500,
        to: 299_999_500,
    };
    for agg in [
        Agg::Sum,
        Agg::Count,
        Agg::Min,
        Agg::Max,
        Agg::First,
        Agg::Last,
    ] {
        let got = store
            .aggregate(SeriesQuery::new(&t, &d, "k", range), 3_600_000, agg)
            .await
            .unwrap();
        assert_eq!(
            got,
            naive(&model, range.from, range.to, 3_600_000, agg),
            "{agg:?}"
        );
    }
}

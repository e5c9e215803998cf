//! Fair group commits: the writer takes each tenant's queued appends in
//! turn, so a tenant flooding the store does not hold another tenant's
//! acknowledgement behind its backlog; each tenant's own appends still
//! commit in order, and nothing is lost.

use std::time::{Duration, Instant};

use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, TenantId};
use ferrule_core::{Durability, Ledger, Ticket};
use ferrule_store::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use ferrule_store::telemetry::{Order, Range, SeriesQuery, TelemetryStore};

fn readings(from: i64, n: i64) -> Vec<Reading> {
    (from..from + n)
        .map(|ts| Reading {
            ts,
            key: "x".into(),
            value: TelemetryValue::Number(ts as f64),
            server_stamped: false,
        })
        .collect()
}

fn telemetry(seq: u64) -> Ticket {
    Ticket::on(Ledger::Telemetry, seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_hold_up_another_tenants_commit() {
    let dir = tempfile::tempdir().unwrap();
    let durability = Durability::default();
    // A small log bound keeps group commits small (half of it at most):
    // the flood needs many of them.
    let options = TelemetryOptions {
        max_log_bytes: 1 << 20,
        ..TelemetryOptions::default()
    };
    let store = EmbeddedTelemetry::open(dir.path(), options, durability.clone()).unwrap();
    let (flood, quiet) = (
        TenantId::new("flood").unwrap(),
        TenantId::new("quiet").unwrap(),
    );
    let d = DeviceId::new("d").unwrap();

    // 40 appends of 10 000 points (400 000 points, some 16 commits) …
    let mut flood_tickets = Vec::new();
    for i in 0..40 {
        let a = store
            .append(&flood, &d, readings(i * 10_000, 10_000), vec![])
            .unwrap();
        flood_tickets.push(a.ticket);
    }
    // … then one point of another tenant, queued behind all of them.
    let q = store.append(&quiet, &d, readings(0, 1), vec![]).unwrap();
    let start = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(60),
        durability.wait(telemetry(q.ticket)),
    )
    .await
    .expect("the quiet tenant's point was never committed");
    let quiet_took = start.elapsed();
    let last = *flood_tickets.last().unwrap();
    assert!(
        !durability.is_durable(telemetry(last)),
        "the quiet tenant waited for the whole flood ({quiet_took:?})"
    );
    // The flood's own appends commit in order: never a later one before an
    // earlier one.
    let mut done = 0;
    while done < flood_tickets.len() {
        // Newest first: whatever commits meanwhile cannot fake a gap.
        let mut durable: Vec<bool> = flood_tickets
            .iter()
            .rev()
            .map(|t| durability.is_durable(telemetry(*t)))
            .collect();
        durable.reverse();
        let n = durable.iter().take_while(|d| **d).count();
        assert!(durable[n..].iter().all(|d| !d), "out of order: {durable:?}");
        done = n;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    durability.wait(telemetry(last)).await;
    // Nothing lost.
    let points = store
        .raw(
            SeriesQuery::new(&flood, &d, "x", Range::ALL),
            Order::Oldest,
            usize::MAX,
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 400_000);
    let points = store
        .raw(
            SeriesQuery::new(&quiet, &d, "x", Range::ALL),
            Order::Oldest,
            usize::MAX,
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 1);
    store.close().await.unwrap();
}

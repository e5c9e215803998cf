//! The recent-telemetry log stays within `telemetry.max_log_bytes` under a
//! burst (sealing is forced, publishers are slowed or asked to retry), and
//! nothing acknowledged is lost; unsealed telemetry counts toward the
//! tenant's disk use.

use std::time::Duration;

use ferrule_mqtt::codec::{Packet, QoS, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{Raw, V5, World, publish_packet};
use crate::telemetry_util::{all_points, ingest, metric, now_ms};
use crate::util::ServerBuilder;

const BOUND: u64 = 256 * 1024;

async fn log_bytes(w: &World) -> f64 {
    metric(&w.s, "ferrule_telemetry_log_bytes").await
}

#[tokio::test]
async fn the_recent_log_stays_within_its_bound() {
    // Sealing by age alone would not happen during the test (15 min).
    let w =
        World::with(ServerBuilder::new().env("FERRULE_TELEMETRY_MAX_LOG_BYTES", BOUND.to_string()))
            .await;
    let t0 = now_ms() - 3_600_000;
    let mut peak = 0f64;
    // HTTP: 60 payloads of 1000 points, about 4 times the bound.
    let mut stored = 0i64;
    let mut busy = 0;
    for i in 0..60i64 {
        let points: Vec<String> = (0..1000)
            .map(|j| json!({"ts": t0 + i * 1000 + j, "values": {"h": j}}).to_string())
            .collect();
        let body = format!("[{}]", points.join(","));
        loop {
            let r = ingest(&w.s, &w.pump, &body).await;
            if r.status == 204 {
                break;
            }
            // Backpressure: retry as told.
            assert_eq!(r.status, 503, "{}", r.text);
            busy += 1;
            assert!(busy < 1000, "never let through");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stored += 1000;
        peak = peak.max(log_bytes(&w).await);
    }
    // MQTT: 100 QoS 1 publishes of 300 points, sent without waiting.
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump", &w.pump, None).await;
    let sender = {
        let mut payloads = Vec::new();
        for i in 0..100i64 {
            let points: Vec<String> = (0..300)
                .map(|j| json!({"ts": t0 + i * 300 + j, "values": {"m": j}}).to_string())
                .collect();
            payloads.push(format!("[{}]", points.join(",")));
        }
        payloads
    };
    for (i, p) in sender.iter().enumerate() {
        dev.send(Packet::Publish(publish_packet(
            "devices/pump/telemetry",
            p.as_bytes(),
            QoS::AtLeastOnce,
            Some(i as u16 + 1),
        )))
        .await;
        if i % 10 == 0 {
            peak = peak.max(log_bytes(&w).await);
        }
    }
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(30), dev.recv()).await {
            Ok(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        peak = peak.max(log_bytes(&w).await);
    }
    assert!(peak > 0.0, "the gauge never moved");
    assert!(peak <= BOUND as f64, "the log reached {peak} bytes");
    assert!(metric(&w.s, "ferrule_telemetry_forced_seals_total").await > 0.0);
    // Nothing acknowledged was lost.
    assert_eq!(all_points(&w.admin, "pump", "h").await.len() as i64, stored);
    assert_eq!(all_points(&w.admin, "pump", "m").await.len(), 30_000);
    w.s.stop().await;
}

#[tokio::test]
async fn unsealed_telemetry_counts_toward_the_tenants_disk_use() {
    let w = World::start().await;
    let text = "x".repeat(2_000);
    let t0 = now_ms() - 60_000;
    let points: Vec<String> = (0..100)
        .map(|j| json!({"ts": t0 + j, "values": {"s": text}}).to_string())
        .collect();
    let r = ingest(&w.s, &w.pump, format!("[{}]", points.join(","))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Not sealed yet (15 min), but 200 kB of strings in the recent log.
    let used = w.admin.get("/api/v1/telemetry/settings").await.json["disk_bytes"]
        .as_u64()
        .unwrap();
    assert!(used >= 200_000, "counted {used} bytes");
    w.s.stop().await;
}

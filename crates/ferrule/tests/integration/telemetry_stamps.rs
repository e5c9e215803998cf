//! Points without a `ts` are stamped with the receive time; two stamped in
//! the same millisecond must both be kept, since both were acknowledged.

use ferrule_mqtt::codec::{Packet, QoS, ReasonCode};

use crate::mqtt_util::{Raw, V5, World, publish_packet};
use crate::telemetry_util::{all_points, ingest_ok};

/// 100 QoS 1 publishes sent back to back (many land in one millisecond):
/// 100 acknowledgements, 100 stored points, in publish order.
#[tokio::test]
async fn quick_publishes_without_ts_keep_every_point() {
    let w = World::start().await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump", &w.pump, None).await;
    for i in 0..100u16 {
        let payload = format!(r#"{{"temp": {i}}}"#);
        dev.send(Packet::Publish(publish_packet(
            "devices/pump/telemetry",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            Some(i + 1),
        )))
        .await;
    }
    for _ in 0..100 {
        match dev.recv().await {
            Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let points = all_points(&w.admin, "pump", "temp").await;
    let values: Vec<i64> = points.iter().map(|p| p.1.as_i64().unwrap()).collect();
    assert_eq!(
        values,
        (0..100).collect::<Vec<_>>(),
        "every point, in order"
    );
    assert!(points.windows(2).all(|p| p[0].0 < p[1].0), "distinct ms");

    // Over HTTP too, in one payload: an array of plain objects.
    let body: Vec<String> = (0..50).map(|i| format!(r#"{{"hum": {i}}}"#)).collect();
    ingest_ok(&w.s, &w.pump, format!("[{}]", body.join(","))).await;
    assert_eq!(all_points(&w.admin, "pump", "hum").await.len(), 50);
    w.s.stop().await;
}

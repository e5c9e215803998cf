//! Keep alive over real TCP: `--mqtt-max-keepalive` reaches the broker,
//! is announced to a real MQTT 5 client as Server Keep Alive, and a silent
//! client is closed. The timing itself (1.5 × keep alive, the will, traffic
//! keeping a client alive) is tested in-process on paused time:
//! `ferrule-mqtt`'s `tests/timing.rs`.

use std::time::{Duration, Instant};

use ferrule_mqtt::codec::{Packet, ReasonCode};

use crate::mqtt_util::{Raw, V5, World, connect_packet};
use crate::util::ServerBuilder;

/// Waits for the broker to close a silent client; returns how long it took
/// and what it sent first.
async fn time_to_close(raw: &mut Raw) -> (Duration, Vec<Packet>) {
    let t0 = Instant::now();
    let got = raw.expect_close().await;
    (t0.elapsed(), got)
}

#[tokio::test]
async fn max_keepalive_is_announced_and_enforced() {
    // Announced: a real MQTT 5 client asking for 60 s gets 5.
    let w = World::with(ServerBuilder::new().arg("--mqtt-max-keepalive").arg("5")).await;
    w.peer().proto(V5).run("server_keepalive").await;

    // Enforced: with a cap of 1 s, a client that asked for 60 s and then
    // stays silent is dropped after about 1.5 s.
    let w = World::with(ServerBuilder::new().arg("--mqtt-max-keepalive").arg("1")).await;
    let mut c = connect_packet(V5, "optimist", Some(&w.pump), None);
    c.keep_alive = 60;
    let (mut raw, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    let (took, got) = time_to_close(&mut raw).await;
    assert!(
        took <= Duration::from_millis(2500),
        "closed after {took:?}, expected about 1.5 s"
    );
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
        "expected DISCONNECT 0x8D, got {got:?}"
    );
}

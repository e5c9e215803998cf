//! Keep alive: a client silent for 1.5 × its keep alive is disconnected
//! (and its will published); one that pings stays; `--mqtt-max-keepalive`
//! caps what MQTT 5 clients get, as Server Keep Alive.

use std::time::{Duration, Instant};

use ferrule_mqtt::codec::{Packet, ProtocolVersion, QoS, ReasonCode, Will};

use crate::mqtt_util::{Raw, V3, V5, World, connect_packet, s};
use crate::util::ServerBuilder;

/// Waits for the broker to close a silent client; returns how long it took
/// and what it sent first.
async fn time_to_close(raw: &mut Raw) -> (Duration, Vec<Packet>) {
    let t0 = Instant::now();
    let got = raw.expect_close().await;
    (t0.elapsed(), got)
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives() {
    let w = World::start().await;
    let mut obs = w.observer().await;
    obs.subscribe(1, &[("devices/pump/status", QoS::AtLeastOnce)])
        .await;
    for v in [V3, V5] {
        let mut c = connect_packet(v, "sleepy", Some(&w.pump), None);
        c.keep_alive = 1;
        c.will = Some(Will {
            topic: s("devices/pump/status"),
            payload: b"timed out".to_vec().into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        });
        let (mut raw, ack, _) = Raw::connect(&w.s.mqtt, c).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        let (took, got) = time_to_close(&mut raw).await;
        // MQTT 5 §3.1.2.10: 1.5 × keep alive; the slack is for a loaded
        // machine.
        assert!(
            took >= Duration::from_millis(1300) && took <= Duration::from_millis(2500),
            "{v:?}: closed after {took:?}, expected about 1.5 s"
        );
        if v == V5 {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
                "expected DISCONNECT 0x8D, got {got:?}"
            );
        } else {
            assert!(got.is_empty(), "3.1.1: the server just closes; got {got:?}");
        }
        // Timing out is not a normal DISCONNECT: the will goes out.
        let will = obs.recv_publish().await;
        assert_eq!(&will.payload[..], b"timed out", "{v:?}");
        obs.puback(will.packet_id.unwrap()).await;
    }
}

#[tokio::test]
async fn a_client_that_pings_stays_connected() {
    let w = World::start().await;
    // Both versions at once, to keep the test short.
    let ping = |v: ProtocolVersion| {
        let (addr, token) = (w.s.mqtt.clone(), w.pump.clone());
        async move {
            let mut c = connect_packet(v, &format!("pinger-{v:?}"), Some(&token), None);
            c.keep_alive = 1;
            let (mut raw, _, _) = Raw::connect(&addr, c).await;
            // 4 × 0.6 s = 2.4 s, well past 1.5 s.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                raw.send(Packet::PingReq).await;
                assert_eq!(raw.recv().await, Packet::PingResp, "{v:?}");
            }
        }
    };
    tokio::join!(ping(V3), ping(V5));
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

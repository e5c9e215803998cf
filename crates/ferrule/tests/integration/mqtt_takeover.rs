//! Connections the server ends: takeover (the same client id in the same
//! tenant takes the session over; in another tenant it is another client;
//! a session stays with the identity that made it) and server shutdown.

use ferrule_mqtt::codec::{Packet, QoS, ReasonCode};

use crate::mqtt_util::{
    Event, Raw, V3, V5, WAIT, World, both_versions, connect_packet, create_device,
    persistent_connect,
};
use crate::util::ADMIN_PASSWORD;

#[tokio::test]
async fn the_same_client_id_takes_over() {
    let w = World::start().await;
    both_versions(&w, "takeover").await;
}

#[tokio::test]
async fn the_same_client_id_in_another_tenant_is_another_client() {
    let w = World::start().await;
    let (beta_pump, _) = w.beta().await;
    for v in [V3, V5] {
        w.peer()
            .proto(v)
            .token("BETA", &beta_pump)
            .run("takeover_other_tenant")
            .await;
    }
}

#[tokio::test]
async fn a_takeover_that_resumes_the_session_gets_the_unacknowledged_message() {
    // MQTT 5 §3.1.4: the old connection gets DISCONNECT 0x8E (3.1.1: is
    // closed); the new one resumes the session, so a QoS 1 message the old
    // one never acknowledged comes again, with DUP, under the same packet id.
    let w = World::start().await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    for (i, v) in [V3, V5].into_iter().enumerate() {
        let cid = format!("roaming-{i}");
        let user = "user:admin@localhost";
        let (mut old, ack, _) = Raw::connect(
            &w.s.mqtt,
            persistent_connect(v, &cid, user, ADMIN_PASSWORD, true),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(!ack.session_present);
        old.subscribe(1, &[("devices/pump/roam", QoS::AtLeastOnce)])
            .await;
        let topic = "devices/pump/roam";
        assert_eq!(
            dev.publish1(10 + i as u16, topic, b"unacked").await,
            ReasonCode::SUCCESS
        );
        let first = old.recv_publish().await;
        assert!(!first.dup);

        let (mut new, ack, _) = Raw::connect(
            &w.s.mqtt,
            persistent_connect(v, &cid, user, ADMIN_PASSWORD, false),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(ack.session_present, "{v:?}: the session is resumed");
        let before_close = old.expect_close().await;
        if v == V5 {
            assert!(
                matches!(before_close.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER),
                "old connection got {before_close:?}, expected DISCONNECT 0x8E"
            );
        } else {
            assert!(
                before_close.is_empty(),
                "3.1.1 has no server DISCONNECT: {before_close:?}"
            );
        }
        let again = new.recv_publish().await;
        assert_eq!(&again.payload[..], b"unacked");
        assert!(again.dup, "{v:?}: a redelivery carries DUP");
        assert_eq!(again.packet_id, first.packet_id, "{v:?}: same packet id");
        new.puback(again.packet_id.unwrap()).await;
        new.expect_silence(std::time::Duration::from_millis(300))
            .await;
    }
}

#[tokio::test]
async fn a_session_is_not_handed_to_another_identity() {
    let w = World::start().await;
    let valve = create_device(&w.admin, "valve").await;
    for v in [V3, V5] {
        w.peer()
            .proto(v)
            .token("VALVE", &valve)
            .run("foreign_session")
            .await;
    }
}

#[tokio::test]
async fn shutdown_tells_mqtt5_clients_why() {
    // MQTT 5 §4.13: the server says 0x8B (server shutting down) before it
    // closes; 3.1.1 clients are just closed.
    let w = World::start().await;
    let mut v5 = Raw::login(&w.s.mqtt, V5, "five", &w.pump, None).await;
    let mut v3 = Raw::login(&w.s.mqtt, V3, "three", &w.pump, None).await;
    let status = w.s.stop().await;
    assert!(status.success(), "{status}");
    let got = v5.expect_close().await;
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN),
        "expected DISCONNECT 0x8B, got {got:?}"
    );
    assert!(v3.expect_close().await.is_empty());
}

#[tokio::test]
async fn concurrent_connects_with_one_client_id_leave_one_connection() {
    // [MQTT-3.1.4-3]: whatever the timing, a client id has at most one
    // connection. Clients that reconnect aggressively (or two instances
    // misconfigured with one id) send CONNECTs at the same moment; after the
    // dust settles exactly one of them may still be connected.
    let w = World::start().await;
    let rounds = 300;
    let per_round = 6;
    let mut all = Vec::new();
    for r in 0..rounds {
        let cid = format!("race-{r}");
        // Sockets first, then the CONNECTs back to back.
        let mut socks = Vec::new();
        for _ in 0..per_round {
            socks.push(Raw::open(&w.s.mqtt, V5).await);
        }
        for raw in &mut socks {
            let c = connect_packet(V5, &cid, Some(&w.pump), None);
            raw.send(Packet::Connect(Box::new(c))).await;
        }
        // Every CONNECT of the round handled before the next round, so a
        // slow broker cannot make a connection look alive.
        for raw in &mut socks {
            match raw.recv().await {
                Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        all.push((cid, socks));
    }
    // A taken-over connection has its DISCONNECT and EOF by now.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut doubled = Vec::new();
    for (cid, socks) in &mut all {
        let mut alive = 0;
        for raw in socks.iter_mut() {
            // Perhaps DISCONNECT 0x8E, then either EOF (taken over) or
            // silence (still connected).
            let mut closed = false;
            loop {
                match raw.next(std::time::Duration::from_millis(5)).await {
                    Event::Packet(..) => {}
                    Event::Closed => {
                        closed = true;
                        break;
                    }
                    Event::Silent => break,
                }
            }
            // Alive means it still answers: a PINGREQ gets its PINGRESP.
            if !closed {
                raw.send(Packet::PingReq).await;
                loop {
                    match raw.next(WAIT).await {
                        Event::Packet(Packet::PingResp, _) => {
                            alive += 1;
                            break;
                        }
                        Event::Packet(..) => {}
                        _ => break,
                    }
                }
            }
        }
        if alive != 1 {
            doubled.push(format!("{cid}: {alive} live connections"));
        }
    }
    assert!(
        doubled.is_empty(),
        "{} of {rounds} client ids ended with other than one connection: {doubled:?}",
        doubled.len()
    );
}

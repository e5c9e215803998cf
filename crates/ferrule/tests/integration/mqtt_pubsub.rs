//! Publish and subscribe: QoS in both directions, wildcards, `$` topics,
//! unsubscribe, and the QoS 1/2 flows on the wire (exactly once, flow
//! control).

use std::time::Duration;

use ferrule_mqtt::codec::{Ack, Packet, QoS, ReasonCode};

use crate::mqtt_util::{Raw, V3, V5, World, both_versions, connect_packet, pid, publish_packet};
use crate::util::ADMIN_PASSWORD;

#[tokio::test]
async fn every_qos_combination_arrives_at_the_lower_qos() {
    // QoS 0/1/2 publish × QoS 0/1/2 subscription, device → user and
    // user → device, in 3.1.1 and 5.
    let w = World::start().await;
    both_versions(&w, "qos_matrix").await;
}

#[tokio::test]
async fn wildcards_match_as_mqtt_says() {
    let w = World::start().await;
    both_versions(&w, "wildcards").await;
}

#[tokio::test]
async fn dollar_topics_are_refused_and_never_matched_by_wildcards() {
    let w = World::start().await;
    both_versions(&w, "dollar_topics").await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let w = World::start().await;
    both_versions(&w, "unsubscribe").await;
}

#[tokio::test]
async fn a_large_payload_arrives_intact() {
    let w = World::start().await;
    both_versions(&w, "large_payload").await;
}

#[tokio::test]
async fn a_burst_arrives_complete_and_in_order() {
    let w = World::start().await;
    both_versions(&w, "burst").await;
}

#[tokio::test]
async fn a_payload_marked_utf8_must_be_utf8() {
    let w = World::start().await;
    w.peer().proto(V5).run("payload_format_invalid").await;
}

#[tokio::test]
async fn a_resent_qos2_publish_is_delivered_once() {
    // QoS 2 from a client: the broker may route at PUBLISH, but a resend
    // with DUP before PUBREL must not route again; after PUBCOMP the packet
    // id is free for a new message (MQTT 5 §4.3.3).
    let w = World::start().await;
    let mut obs = w.observer().await;
    assert_eq!(
        obs.subscribe(1, &[("devices/pump/#", QoS::AtLeastOnce)])
            .await,
        [ReasonCode::GRANTED_QOS_1]
    );
    for v in [V3, V5] {
        let mut dev = Raw::login(&w.s.mqtt, v, "dev", &w.pump, None).await;
        for payload in [&b"first"[..], b"second"] {
            let mut p = publish_packet("devices/pump/once", payload, QoS::ExactlyOnce, Some(7));
            dev.send(Packet::Publish(p.clone())).await;
            match dev.recv().await {
                Packet::PubRec(a) => {
                    assert_eq!((a.packet_id.get(), a.reason_code), (7, ReasonCode::SUCCESS))
                }
                other => panic!("expected PUBREC, got {other:?}"),
            }
            // The client did not see the PUBREC and sends again.
            p.dup = true;
            dev.send(Packet::Publish(p)).await;
            match dev.recv().await {
                Packet::PubRec(a) => assert_eq!(a.packet_id.get(), 7),
                other => panic!("expected PUBREC, got {other:?}"),
            }
            dev.send(Packet::PubRel(Ack::new(pid(7)))).await;
            match dev.recv().await {
                Packet::PubComp(a) => {
                    assert_eq!((a.packet_id.get(), a.reason_code), (7, ReasonCode::SUCCESS))
                }
                other => panic!("expected PUBCOMP, got {other:?}"),
            }
            let m = obs.recv_publish().await;
            assert_eq!(&m.payload[..], payload, "{v:?}");
            obs.puback(m.packet_id.expect("QoS 1")).await;
            obs.expect_silence(Duration::from_millis(400)).await;
        }
    }
}

#[tokio::test]
async fn the_clients_receive_maximum_bounds_messages_in_flight() {
    // MQTT 5 §3.3.4 [MQTT-3.3.4-9]: no more unacknowledged QoS 1/2
    // PUBLISHes than the client's Receive Maximum.
    let w = World::start().await;
    let mut c = connect_packet(
        V5,
        "slow",
        Some("user:admin@localhost"),
        Some(ADMIN_PASSWORD),
    );
    c.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let (mut sub, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    sub.subscribe(1, &[("devices/pump/#", QoS::AtLeastOnce)])
        .await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    for i in 0..5u16 {
        let rc = dev
            .publish1(i + 1, "devices/pump/flow", format!("{i}").as_bytes())
            .await;
        assert_eq!(rc, ReasonCode::SUCCESS);
    }
    let a = sub.recv_publish().await;
    let b = sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(500)).await;
    sub.puback(a.packet_id.unwrap()).await;
    let c = sub.recv_publish().await;
    sub.expect_silence(Duration::from_millis(300)).await;
    sub.puback(b.packet_id.unwrap()).await;
    sub.puback(c.packet_id.unwrap()).await;
    let d = sub.recv_publish().await;
    let e = sub.recv_publish().await;
    let order: Vec<&[u8]> = [&a, &b, &c, &d, &e]
        .iter()
        .map(|p| &p.payload[..])
        .collect();
    assert_eq!(order, [b"0", b"1", b"2", b"3", b"4"], "in order");
}

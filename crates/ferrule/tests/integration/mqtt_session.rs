//! Sessions: what survives a disconnect (subscriptions, queued and
//! unacknowledged messages), clean start, the session expiry announced.
//! (Session expiry's timing is tested in-process on paused time:
//! `ferrule-mqtt`'s `tests/timing.rs`.)

use std::time::Duration;

use ferrule_mqtt::codec::{Ack, Packet, QoS, ReasonCode};

use crate::mqtt_util::{
    Raw, V3, V5, World, add_device_password, both_versions, connect_packet, persistent_connect,
    pid, publish_packet,
};
use crate::util::ADMIN_PASSWORD;

#[tokio::test]
async fn a_persistent_session_queues_messages_while_offline() {
    let w = World::start().await;
    both_versions(&w, "session_resume").await;
}

#[tokio::test]
async fn clean_start_discards_the_session() {
    let w = World::start().await;
    both_versions(&w, "clean_start_discards").await;
}

#[tokio::test]
async fn a_session_belongs_to_the_device_not_the_credential() {
    let w = World::start().await;
    add_device_password(&w.admin, "pump", "device-pass-123").await;
    for v in [V3, V5] {
        w.peer()
            .proto(v)
            .login(
                "DEVPW",
                &("pump@default".to_owned(), "device-pass-123".to_owned()),
            )
            .run("session_across_credentials")
            .await;
    }
}

#[tokio::test]
async fn a_session_expiry_above_the_maximum_is_capped_and_announced() {
    // MQTT 5 §3.2.2.3.2: when the server uses another Session Expiry
    // Interval than the client asked for, CONNACK says which.
    let w = World::start().await;
    let mut c = connect_packet(V5, "forever", Some(&w.pump), None);
    c.properties.session_expiry_interval = Some(u32::MAX);
    let (_raw, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let granted = ack
        .properties
        .session_expiry_interval
        .expect("CONNACK must announce the capped session expiry");
    assert!(granted > 0 && granted < u32::MAX, "granted {granted}");
    // Asking for less than the cap is accepted as is: nothing announced.
    let mut c = connect_packet(V5, "hourly", Some(&w.pump), None);
    c.properties.session_expiry_interval = Some(3600);
    let (_raw, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.properties.session_expiry_interval, None);
}

#[tokio::test]
async fn an_unacknowledged_message_is_redelivered_with_dup() {
    // paho with manual acks: the message is received, never acknowledged,
    // the connection dies; on resume it comes again with DUP and its id.
    let w = World::start().await;
    both_versions(&w, "session_redelivery").await;
}

#[tokio::test]
async fn an_unfinished_qos2_delivery_resumes_with_pubrel() {
    // MQTT 5 §4.4: after PUBREC the server owns the next step; on resume it
    // sends PUBREL again (not the PUBLISH), and PUBCOMP ends it.
    let w = World::start().await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    for (i, v) in [V3, V5].into_iter().enumerate() {
        let cid = format!("q2-{i}");
        let user = "user:admin@localhost";
        let (mut sub, _, _) = Raw::connect(
            &w.s.mqtt,
            persistent_connect(v, &cid, user, ADMIN_PASSWORD, true),
        )
        .await;
        sub.subscribe(1, &[("devices/pump/q2", QoS::ExactlyOnce)])
            .await;

        let id = 20 + i as u16;
        dev.send(Packet::Publish(publish_packet(
            "devices/pump/q2",
            b"exactly",
            QoS::ExactlyOnce,
            Some(id),
        )))
        .await;
        assert!(matches!(dev.recv().await, Packet::PubRec(_)));
        dev.send(Packet::PubRel(Ack::new(pid(id)))).await;
        assert!(matches!(dev.recv().await, Packet::PubComp(_)));

        let m = sub.recv_publish().await;
        assert_eq!((m.qos, &m.payload[..]), (QoS::ExactlyOnce, &b"exactly"[..]));
        let mid = m.packet_id.unwrap();
        sub.send(Packet::PubRec(Ack::new(mid))).await;
        match sub.recv().await {
            Packet::PubRel(a) => assert_eq!(a.packet_id, mid),
            other => panic!("expected PUBREL, got {other:?}"),
        }
        drop(sub); // gone before PUBCOMP

        let (mut back, ack, _) = Raw::connect(
            &w.s.mqtt,
            persistent_connect(v, &cid, user, ADMIN_PASSWORD, false),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(ack.session_present, "{v:?}");
        match back.recv().await {
            Packet::PubRel(a) => assert_eq!(a.packet_id, mid, "{v:?}"),
            other => panic!("{v:?}: expected PUBREL again, got {other:?}"),
        }
        back.send(Packet::PubComp(Ack::new(mid))).await;
        back.expect_silence(Duration::from_millis(400)).await;
    }
}

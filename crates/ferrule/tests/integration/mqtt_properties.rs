//! MQTT 5 properties: application properties carried from publisher to
//! subscriber, Message Expiry, Topic Aliases both ways, the client's
//! Maximum Packet Size. (Expiry of queued messages is tested in-process on
//! paused time: `ferrule-mqtt`'s `tests/timing.rs`.)

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use ferrule_mqtt::codec::{Packet, Publish, QoS, ReasonCode};

use crate::mqtt_util::{Event, Raw, V5, WAIT, World, connect_packet};
use crate::util::ADMIN_PASSWORD;

#[tokio::test]
async fn application_properties_reach_the_subscriber() {
    // Content type, user properties (order and repeats kept), response
    // topic, correlation data, payload format, message expiry.
    let w = World::start().await;
    w.peer().proto(V5).run("properties_passthrough").await;
}

#[tokio::test]
async fn topic_aliases_from_the_client_are_resolved() {
    let w = World::start().await;
    w.peer().proto(V5).run("topic_alias_in").await;
}

/// Resolves the topic of a PUBLISH the way a client must (MQTT 5
/// §3.3.2.3.4), keeping the alias map; panics on what a client would treat
/// as a Protocol Error.
fn resolve(aliases: &mut HashMap<u16, String>, max: u16, p: &Publish) -> String {
    match p.properties.topic_alias {
        None => {
            assert!(!p.topic.is_empty(), "empty topic without an alias: {p:?}");
            p.topic.as_str().to_owned()
        }
        Some(alias) => {
            let alias = alias.get();
            assert!(
                alias <= max,
                "alias {alias} above the client's maximum {max}"
            );
            if p.topic.is_empty() {
                aliases.get(&alias).cloned().unwrap_or_else(|| {
                    panic!("topic alias {alias} was never set up for this client: {p:?}")
                })
            } else {
                aliases.insert(alias, p.topic.as_str().to_owned());
                p.topic.as_str().to_owned()
            }
        }
    }
}

/// An admin subscriber to `devices/pump/#` with these CONNECT limits.
async fn subscriber(w: &World, alias_max: u16, max_packet: Option<u32>) -> Raw {
    let mut c = connect_packet(
        V5,
        "limited",
        Some("user:admin@localhost"),
        Some(ADMIN_PASSWORD),
    );
    c.properties.topic_alias_maximum = Some(alias_max);
    c.properties.maximum_packet_size = max_packet.and_then(NonZeroU32::new);
    let (mut sub, ack, _) = Raw::connect(&w.s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    sub.subscribe(1, &[("devices/pump/#", QoS::AtMostOnce)])
        .await;
    sub
}

#[tokio::test]
async fn the_server_uses_topic_aliases_only_within_the_clients_maximum() {
    let w = World::start().await;
    let mut sub = subscriber(&w, 2, None).await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    let sent = ["a", "a", "b", "c", "a", "c", "b", "a"].map(|t| format!("devices/pump/{t}"));
    for t in &sent {
        dev.publish0(t, b"x").await;
    }
    let mut aliases = HashMap::new();
    let mut used_alias_only = 0;
    let mut got = Vec::new();
    for _ in &sent {
        let p = sub.recv_publish().await;
        if p.topic.is_empty() {
            used_alias_only += 1;
        }
        got.push(resolve(&mut aliases, 2, &p));
    }
    assert_eq!(got, sent);
    // Ferrule does use aliases; without any this test would check nothing.
    assert!(used_alias_only > 0, "no PUBLISH used an alias alone");
    // A client that allows none gets none.
    let mut plain = subscriber(&w, 0, None).await;
    dev.publish0("devices/pump/a", b"y").await;
    let p = plain.recv_publish().await;
    assert!(p.properties.topic_alias.is_none() && p.topic == "devices/pump/a");
}

#[tokio::test]
async fn a_message_larger_than_the_clients_maximum_packet_size_is_not_sent() {
    // MQTT 5 §3.1.2.11.4 [MQTT-3.1.2-24]: the server must not send it (it
    // discards it); later messages flow as usual.
    let w = World::start().await;
    let mut sub = subscriber(&w, 0, Some(128)).await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    assert_eq!(
        dev.publish1(1, "devices/pump/big", &[b'x'; 300]).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        dev.publish1(2, "devices/pump/small", b"fits").await,
        ReasonCode::SUCCESS
    );
    match sub.next(WAIT).await {
        Event::Packet(Packet::Publish(p), bytes) => {
            assert_eq!(p.topic, "devices/pump/small");
            assert!(bytes.len() <= 128, "{} bytes sent", bytes.len());
        }
        other => panic!("expected the small PUBLISH, got {other:?}"),
    }
    sub.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_message_dropped_as_too_large_leaves_no_unknown_topic_alias() {
    let w = World::start().await;
    let mut sub = subscriber(&w, 5, Some(128)).await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    // Too large for the subscriber: dropped...
    dev.publish1(1, "devices/pump/big", &[b'x'; 300]).await;
    // ...then a small one on the same topic.
    dev.publish1(2, "devices/pump/big", b"small").await;
    let p = sub.recv_publish().await;
    let mut aliases = HashMap::new();
    assert_eq!(resolve(&mut aliases, 5, &p), "devices/pump/big");
}

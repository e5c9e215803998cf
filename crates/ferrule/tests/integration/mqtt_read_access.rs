//! Read access decided per message (SECURITY "MQTT access control"): a
//! wildcard subscription is granted when some topic it matches may be
//! received, every message is checked on its way out — live, queued,
//! retained, redelivered — and a rule change reaches existing subscriptions
//! at the next message.

use std::time::Duration;

use ferrule_mqtt::codec::{Packet, Publish, QoS, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{
    Raw, V3, V5, World, create_device, create_user, persistent_connect, publish_packet,
};

const QUIET: Duration = Duration::from_millis(400);

/// Creates an ACL rule in tenant `default`; returns its id.
async fn rule(w: &World, rule: serde_json::Value) -> String {
    let r = w.admin.post("/api/v1/acl-rules", rule).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().expect("id").to_owned()
}

async fn delete_rule(w: &World, id: &str) {
    let r = w.admin.delete(&format!("/api/v1/acl-rules/{id}")).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
}

/// An editor's MQTT login.
async fn editor(w: &World, email: &str) -> (String, String) {
    create_user(&w.admin, email, "editor").await
}

/// A connection as `login`, client id `id`.
async fn client(
    w: &World,
    v: ferrule_mqtt::codec::ProtocolVersion,
    id: &str,
    login: &(String, String),
) -> Raw {
    Raw::login(&w.s.mqtt, v, id, &login.0, Some(&login.1)).await
}

/// The next PUBLISH, acknowledged when it needs it.
async fn receive(c: &mut Raw) -> Publish {
    let p = c.recv_publish().await;
    if let Some(id) = p.packet_id {
        c.puback(id).await;
    }
    p
}

fn topic(p: &Publish) -> &str {
    p.topic.as_str()
}

#[tokio::test]
async fn one_narrow_deny_leaves_wildcards_granted_and_the_denied_topic_undelivered() {
    // The issue's case (mosquitto's test/nosubscribe): before, `#`, `+/+`
    // and `test/+` were refused whole.
    let w = World::start().await;
    rule(
        &w,
        json!({"effect": "deny", "action": "subscribe", "topic": "test/nosubscribe", "subject": "users"}),
    )
    .await;
    let reader = editor(&w, "reader@example.com").await;
    let writer = editor(&w, "writer@example.com").await;
    for v in [V3, V5] {
        let mut sub = client(&w, v, "reader", &reader).await;
        let codes = sub
            .subscribe(
                1,
                &[
                    ("#", QoS::AtLeastOnce),
                    ("+/+", QoS::AtLeastOnce),
                    ("test/+", QoS::AtLeastOnce),
                    ("test/nosubscribe", QoS::AtLeastOnce),
                ],
            )
            .await;
        assert_eq!(
            codes,
            [
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
            "{v:?}"
        );
        let mut publisher = client(&w, V5, "writer", &writer).await;
        // Publishing there is not the rule's business.
        assert_eq!(
            publisher.publish1(1, "test/nosubscribe", b"secret").await,
            ReasonCode::SUCCESS
        );
        assert_eq!(
            publisher.publish1(2, "test/open", b"open").await,
            ReasonCode::SUCCESS
        );
        let p = receive(&mut sub).await;
        assert_eq!(
            (topic(&p), &p.payload[..]),
            ("test/open", &b"open"[..]),
            "{v:?}"
        );
        sub.expect_silence(QUIET).await;
    }
    let metrics = w.s.anon().get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferrule_mqtt_denied_total")
                && l.contains(r#"access="receive""#)
                && l.contains(r#"tenant="default""#)),
        "denied receipts are counted per tenant:\n{metrics}"
    );
}

#[tokio::test]
async fn a_device_gets_wildcards_over_its_own_topics_and_nothing_else() {
    // Without rules a device receives `devices/{id}/#` only: a wildcard that
    // can reach it is granted and filtered, one that cannot is 0x80.
    let w = World::start().await;
    let fan = create_device(&w.admin, "fan").await;
    let mut fan = Raw::login(&w.s.mqtt, V5, "fan", &fan, None).await;
    for v in [V3, V5] {
        let mut pump = Raw::login(&w.s.mqtt, v, "pump", &w.pump, None).await;
        let codes = pump
            .subscribe(
                1,
                &[
                    ("devices/+/telemetry", QoS::AtLeastOnce),
                    ("devices/fan/#", QoS::AtLeastOnce),
                    ("alerts/#", QoS::AtLeastOnce),
                    ("$share/g/devices/fan/#", QoS::AtLeastOnce),
                ],
            )
            .await;
        assert_eq!(
            codes,
            [
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
            "{v:?}"
        );
        assert_eq!(
            fan.publish1(1, "devices/fan/telemetry", b"{\"t\": 1}")
                .await,
            ReasonCode::SUCCESS
        );
        let mut own = Raw::login(&w.s.mqtt, V5, "pump-2", &w.pump, None).await;
        assert_eq!(
            own.publish1(1, "devices/pump/telemetry", b"{\"t\": 2}")
                .await,
            ReasonCode::SUCCESS
        );
        let p = receive(&mut pump).await;
        assert_eq!(topic(&p), "devices/pump/telemetry", "{v:?}");
        pump.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn a_rule_change_reaches_existing_subscriptions_at_the_next_message() {
    let w = World::start().await;
    let reader = editor(&w, "reader@example.com").await;
    let mut sub = client(&w, V5, "reader", &reader).await;
    assert_eq!(
        sub.subscribe(1, &[("#", QoS::AtLeastOnce)]).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut publisher = w.observer().await;
    let mut n = 0;
    let mut send = async |publisher: &mut Raw, t: &str| {
        n += 1;
        assert_eq!(publisher.publish1(n, t, b"x").await, ReasonCode::SUCCESS);
    };
    send(&mut publisher, "ops/a").await;
    assert_eq!(topic(&receive(&mut sub).await), "ops/a");

    // Revoked: a deny after the SUBSCRIBE stops delivery at once.
    let id = rule(
        &w,
        json!({"effect": "deny", "action": "subscribe", "topic": "ops/#", "subject": "users"}),
    )
    .await;
    send(&mut publisher, "ops/b").await;
    send(&mut publisher, "other/b").await;
    assert_eq!(topic(&receive(&mut sub).await), "other/b");
    sub.expect_silence(QUIET).await;

    // Restored, then narrowed to one topic.
    delete_rule(&w, &id).await;
    send(&mut publisher, "ops/c").await;
    assert_eq!(topic(&receive(&mut sub).await), "ops/c");
    rule(
        &w,
        json!({"effect": "deny", "action": "subscribe", "topic": "ops/secret", "subject": "all"}),
    )
    .await;
    send(&mut publisher, "ops/secret").await;
    send(&mut publisher, "ops/d").await;
    assert_eq!(topic(&receive(&mut sub).await), "ops/d");
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_resumed_session_gets_only_what_the_rules_allow_now() {
    // In flight when the client left, queued while it was away: both are
    // checked against the rules as they are when it comes back.
    let w = World::start().await;
    let reader = editor(&w, "reader@example.com").await;
    let mut publisher = w.observer().await;
    for v in [V5, V3] {
        let connect = |first| persistent_connect(v, "reader", &reader.0, &reader.1, first);
        let (mut sub, ack, _) = Raw::connect(&w.s.mqtt, connect(true)).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(
            sub.subscribe(1, &[("site/#", QoS::AtLeastOnce)]).await,
            [ReasonCode::GRANTED_QOS_1]
        );
        assert_eq!(
            publisher.publish1(1, "site/inflight", b"1").await,
            ReasonCode::SUCCESS
        );
        // Received, never acknowledged: in flight when the client goes.
        assert_eq!(topic(&sub.recv_publish().await), "site/inflight");
        drop(sub);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, t) in ["site/queued", "site/kept"].into_iter().enumerate() {
            assert_eq!(
                publisher.publish1(10 + i as u16, t, b"2").await,
                ReasonCode::SUCCESS
            );
        }
        let ids = [
            rule(
                &w,
                json!({"effect": "deny", "action": "subscribe", "topic": "site/inflight", "subject": "users"}),
            )
            .await,
            rule(
                &w,
                json!({"effect": "deny", "action": "subscribe", "topic": "site/queued", "subject": "users"}),
            )
            .await,
        ];
        let (mut sub, ack, _) = Raw::connect(&w.s.mqtt, connect(false)).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(ack.session_present, "{v:?}");
        let p = receive(&mut sub).await;
        assert_eq!(
            topic(&p),
            "site/kept",
            "{v:?}: only what may be received now"
        );
        assert!(!p.dup, "{v:?}");
        // And live messages on the resumed subscription too.
        assert_eq!(
            publisher.publish1(20, "site/queued", b"3").await,
            ReasonCode::SUCCESS
        );
        sub.expect_silence(QUIET).await;
        for id in ids {
            delete_rule(&w, &id).await;
        }
        // Ends the session for the next round.
        sub.send(Packet::Disconnect(ferrule_mqtt::codec::Disconnect::new(
            ReasonCode::SUCCESS,
        )))
        .await;
        let (sub, _, _) = Raw::connect(&w.s.mqtt, connect(true)).await;
        drop(sub);
    }
}

#[tokio::test]
async fn retained_messages_are_filtered_and_a_filter_reaching_nothing_is_refused() {
    let w = World::start().await;
    let mut publisher = w.observer().await;
    for (i, t) in ["cfg/public", "cfg/secret"].into_iter().enumerate() {
        let mut p = publish_packet(t, t.as_bytes(), QoS::AtLeastOnce, Some(1 + i as u16));
        p.retain = true;
        publisher.send(Packet::Publish(p)).await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    rule(
        &w,
        json!({"effect": "deny", "action": "subscribe", "topic": "cfg/secret", "subject": "users"}),
    )
    .await;
    let reader = editor(&w, "reader@example.com").await;
    for v in [V3, V5] {
        let mut sub = client(&w, v, "reader", &reader).await;
        assert_eq!(
            sub.subscribe(
                1,
                &[
                    ("cfg/#", QoS::AtLeastOnce),
                    ("cfg/secret", QoS::AtLeastOnce)
                ]
            )
            .await,
            [ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
            "{v:?}"
        );
        let p = receive(&mut sub).await;
        assert_eq!((topic(&p), p.retain), ("cfg/public", true), "{v:?}");
        sub.expect_silence(QUIET).await;
    }
}

//! Who may publish and subscribe where (SPEC "MQTT"): devices under
//! `devices/{id}/#` only, users and keys by role across their tenant, and
//! tenants never meeting.

use std::time::Duration;

use ferrule_mqtt::codec::{Ack, Packet, QoS, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{
    Raw, V3, V5, World, both_versions, create_api_key, create_user, pid, publish_packet,
};

#[tokio::test]
async fn a_device_publishes_only_under_its_own_topics() {
    let w = World::start().await;
    both_versions(&w, "acl_device_publish").await;
}

#[tokio::test]
async fn a_device_subscribes_only_under_its_own_topics() {
    let w = World::start().await;
    both_versions(&w, "acl_subscribe").await;
}

#[tokio::test]
async fn a_refused_qos2_publish() {
    // MQTT 5: PUBREC 0x87 ends the exchange. 3.1.1: a plain PUBREC (the
    // refusal is silent), and the client's PUBREL still gets its PUBCOMP.
    // Either way nothing is delivered.
    let w = World::start().await;
    let mut obs = w.observer().await;
    obs.subscribe(1, &[("#", QoS::ExactlyOnce)]).await;
    for v in [V5, V3] {
        let mut dev = Raw::login(&w.s.mqtt, v, "dev", &w.pump, None).await;
        dev.send(Packet::Publish(publish_packet(
            "devices/other/cmd",
            b"nope",
            QoS::ExactlyOnce,
            Some(3),
        )))
        .await;
        match dev.recv().await {
            Packet::PubRec(a) if v == V5 => {
                assert_eq!(a.reason_code, ReasonCode::NOT_AUTHORIZED)
            }
            Packet::PubRec(a) => assert_eq!(a.packet_id.get(), 3),
            other => panic!("{v:?}: expected PUBREC, got {other:?}"),
        }
        if v == V3 {
            dev.send(Packet::PubRel(Ack::new(pid(3)))).await;
            assert!(matches!(dev.recv().await, Packet::PubComp(_)));
        }
        obs.expect_silence(Duration::from_millis(400)).await;
        // Still connected and able to publish where allowed.
        assert_eq!(
            dev.publish1(4, "devices/pump/ok", b"ok").await,
            ReasonCode::SUCCESS
        );
        let m = obs.recv_publish().await;
        assert_eq!(m.topic, "devices/pump/ok");
        obs.puback(m.packet_id.unwrap()).await;
    }
}

#[tokio::test]
async fn users_and_keys_act_by_role() {
    let w = World::start().await;
    let editor = create_user(&w.admin, "ed@example.com", "editor").await;
    let viewer = create_user(&w.admin, "vi@example.com", "viewer").await;
    let key_editor = create_api_key(&w.admin, "editor").await;
    let key_viewer = create_api_key(&w.admin, "viewer").await;
    for v in [V3, V5] {
        w.peer()
            .proto(v)
            .login("EDITOR", &editor)
            .login("VIEWER", &viewer)
            .login("KEY_EDITOR", &key_editor)
            .login("KEY_VIEWER", &key_viewer)
            .run("acl_user_roles")
            .await;
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_messages() {
    // Same device id, same topics, `#` subscribers, retained messages.
    for v in [V3, V5] {
        let w = World::start().await;
        let (beta_pump, beta_owner) = w.beta().await;
        w.peer()
            .proto(v)
            .token("BETA", &beta_pump)
            .login("BETA_OBS", &beta_owner)
            .run("tenant_isolation")
            .await;
    }
}

/// Creates an ACL rule as the admin (tenant `default`); returns its id.
async fn acl_rule(w: &World, rule: serde_json::Value) -> String {
    let r = w.admin.post("/api/v1/acl-rules", rule).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().expect("id").to_owned()
}

async fn admin_observer(w: &World, filter: &str) -> Raw {
    let mut obs = w.observer().await;
    obs.subscribe(1, &[(filter, QoS::AtMostOnce)]).await;
    obs
}

#[tokio::test]
async fn acl_rules_extend_what_a_device_may_do() {
    // SPEC: "unless the tenant's ACL rules grant more (e.g. a gateway for
    // its children)", with `{device_id}` standing for the device itself.
    let w = World::start().await;
    acl_rule(
        &w,
        json!({"effect": "allow", "action": "publish", "topic": "devices/+/telemetry", "subject": "devices"}),
    )
    .await;
    acl_rule(
        &w,
        json!({"effect": "allow", "action": "subscribe", "topic": "gateways/{device_id}/#", "subject": "devices"}),
    )
    .await;
    // Telemetry is kept only for devices that exist.
    crate::mqtt_util::create_device(&w.admin, "child-1").await;
    let mut obs = admin_observer(&w, "devices/#").await;
    for v in [V3, V5] {
        let mut dev = Raw::login(&w.s.mqtt, v, "gateway", &w.pump, None).await;
        // Its children's telemetry: granted by the rule.
        assert_eq!(
            dev.publish1(1, "devices/child-1/telemetry", b"{}").await,
            ReasonCode::SUCCESS
        );
        assert_eq!(obs.recv_publish().await.topic, "devices/child-1/telemetry");
        // Anything else of theirs: still refused.
        let rc = dev
            .publish1(2, "devices/child-1/state/reported", b"{}")
            .await;
        if v == V5 {
            assert_eq!(rc, ReasonCode::NOT_AUTHORIZED);
        }
        obs.expect_silence(Duration::from_millis(300)).await;
        // Subscriptions: its own gateway subtree, not another device's; a
        // wildcard reaching its own is granted (and filtered per message).
        let codes = dev
            .subscribe(
                3,
                &[
                    ("gateways/pump/#", QoS::AtLeastOnce),
                    ("gateways/valve/#", QoS::AtLeastOnce),
                    ("gateways/#", QoS::AtLeastOnce),
                ],
            )
            .await;
        assert_eq!(
            codes,
            [
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::GRANTED_QOS_1
            ],
            "{v:?}"
        );
    }
}

#[tokio::test]
async fn a_deny_rule_refuses_only_subscriptions_wholly_inside_it() {
    let w = World::start().await;
    let editor = create_user(&w.admin, "ed@example.com", "editor").await;
    acl_rule(
        &w,
        json!({"effect": "deny", "action": "subscribe", "topic": "secrets/#", "subject": "users"}),
    )
    .await;
    for v in [V3, V5] {
        let mut c = Raw::login(&w.s.mqtt, v, "ed", &editor.0, Some(&editor.1)).await;
        let codes = c
            .subscribe(
                1,
                &[
                    ("secrets/x", QoS::AtLeastOnce),
                    ("#", QoS::AtLeastOnce),
                    ("+/x", QoS::AtLeastOnce),
                    ("public/#", QoS::AtLeastOnce),
                ],
            )
            .await;
        assert_eq!(
            codes,
            [
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_1
            ],
            "{v:?}: only a filter that can match nothing but denied topics is refused \
             (the rest is filtered message by message: mqtt_read_access)"
        );
        // Devices are not "users": pump still subscribes under its own
        // topics, and publishing to secrets stays possible for the editor.
        assert_eq!(c.publish1(2, "secrets/x", b"s").await, ReasonCode::SUCCESS);
    }
}

#[tokio::test]
async fn rule_changes_apply_to_connected_clients_at_once() {
    // The API answers after the broker's policy is reloaded: the very next
    // publish on an existing connection obeys the new rule.
    let w = World::start().await;
    let editor = create_user(&w.admin, "ed@example.com", "editor").await;
    let mut c = Raw::login(&w.s.mqtt, V5, "ed", &editor.0, Some(&editor.1)).await;
    assert_eq!(
        c.publish1(1, "ops/restart", b"1").await,
        ReasonCode::SUCCESS
    );
    let id = acl_rule(
        &w,
        json!({"effect": "deny", "action": "publish", "topic": "ops/#", "subject": "users"}),
    )
    .await;
    assert_eq!(
        c.publish1(2, "ops/restart", b"2").await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        c.publish1(3, "dev/restart", b"3").await,
        ReasonCode::SUCCESS
    );
    let r = w.admin.delete(&format!("/api/v1/acl-rules/{id}")).await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    assert_eq!(
        c.publish1(4, "ops/restart", b"4").await,
        ReasonCode::SUCCESS
    );
}

#[tokio::test]
async fn rule_priority_and_ties() {
    // Higher priority first; at equal priority deny wins.
    let w = World::start().await;
    let viewer = create_user(&w.admin, "vi@example.com", "viewer").await;
    acl_rule(
        &w,
        json!({"effect": "allow", "action": "publish", "topic": "feedback/#", "subject": "users", "priority": 10}),
    )
    .await;
    acl_rule(
        &w,
        json!({"effect": "deny", "action": "publish", "topic": "feedback/#", "subject": "users", "priority": 5}),
    )
    .await;
    acl_rule(
        &w,
        json!({"effect": "allow", "action": "publish", "topic": "tie/#", "subject": "users", "priority": 1}),
    )
    .await;
    acl_rule(
        &w,
        json!({"effect": "deny", "action": "publish", "topic": "tie/#", "subject": "users", "priority": 1}),
    )
    .await;
    let mut c = Raw::login(&w.s.mqtt, V5, "vi", &viewer.0, Some(&viewer.1)).await;
    assert_eq!(
        c.publish1(1, "feedback/x", b"ok").await,
        ReasonCode::SUCCESS,
        "a viewer may publish where a higher-priority allow says so"
    );
    assert_eq!(
        c.publish1(2, "tie/x", b"no").await,
        ReasonCode::NOT_AUTHORIZED,
        "deny wins a tie"
    );
    assert_eq!(
        c.publish1(3, "elsewhere", b"no").await,
        ReasonCode::NOT_AUTHORIZED,
        "the viewer default still holds elsewhere"
    );
}

#[tokio::test]
async fn rules_for_anonymous_clients() {
    let w = World::with(crate::util::ServerBuilder::new().arg("--mqtt-allow-anonymous")).await;
    acl_rule(
        &w,
        json!({"effect": "deny", "action": "publish", "topic": "#", "subject": "anonymous"}),
    )
    .await;
    let (mut anon, ack, _) = Raw::connect(
        &w.s.mqtt,
        crate::mqtt_util::connect_packet(V5, "anon", None, None),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(
        anon.subscribe(1, &[("devices/#", QoS::AtLeastOnce)]).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        anon.publish1(2, "devices/pump/commands/x", b"x").await,
        ReasonCode::NOT_AUTHORIZED
    );
    // Other subjects are unaffected.
    let mut dev = Raw::login(&w.s.mqtt, V5, "dev", &w.pump, None).await;
    assert_eq!(
        dev.publish1(1, "devices/pump/telemetry", b"{}").await,
        ReasonCode::SUCCESS
    );
    assert_eq!(anon.recv_publish().await.topic, "devices/pump/telemetry");
}

//! Revoking an identity through the API closes its MQTT connections that are
//! already open (DISCONNECT 0x98 in MQTT 5), not only future logins.

use ferrule_mqtt::codec::{Packet, ProtocolVersion, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{Raw, World, connect_packet, create_api_key, create_user};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The connection is closed with DISCONNECT 0x98 (Administrative action).
async fn assert_kicked(raw: &mut Raw) {
    let before_close = raw.expect_close().await;
    assert!(
        matches!(before_close.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "expected DISCONNECT 0x98, got {before_close:?}"
    );
}

#[tokio::test]
async fn revoking_a_device_credential_disconnects_the_device() {
    let w = World::start().await;
    let dev = w.admin.post("/api/v1/devices", json!({"id": "gate"})).await;
    let token = dev.json["token"].as_str().unwrap().to_owned();
    let cred = dev.json["credential_id"].as_str().unwrap().to_owned();
    let mut raw = Raw::login(&w.s.mqtt, V5, "gate-1", &token, None).await;
    let r = w
        .admin
        .delete(&format!("/api/v1/devices/gate/credentials/{cred}"))
        .await;
    assert_eq!(r.status, 204);
    assert_kicked(&mut raw).await;
    let (_, ack, _) =
        Raw::connect(&w.s.mqtt, connect_packet(V5, "gate-1", Some(&token), None)).await;
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

#[tokio::test]
async fn disabling_or_deleting_a_device_disconnects_it() {
    let w = World::start().await;
    let dev = w.admin.post("/api/v1/devices", json!({"id": "gate"})).await;
    let token = dev.json["token"].as_str().unwrap().to_owned();
    let mut raw = Raw::login(&w.s.mqtt, V5, "gate-1", &token, None).await;
    // Renaming does not disturb the device; disabling does.
    assert_eq!(
        w.admin
            .patch("/api/v1/devices/gate", json!({"name": "Gate"}))
            .await
            .status,
        200
    );
    raw.expect_silence(std::time::Duration::from_millis(300))
        .await;
    assert_eq!(
        w.admin
            .patch("/api/v1/devices/gate", json!({"enabled": false}))
            .await
            .status,
        200
    );
    assert_kicked(&mut raw).await;

    assert_eq!(
        w.admin
            .patch("/api/v1/devices/gate", json!({"enabled": true}))
            .await
            .status,
        200
    );
    let mut raw = Raw::login(&w.s.mqtt, V5, "gate-1", &token, None).await;
    assert_eq!(w.admin.delete("/api/v1/devices/gate").await.status, 204);
    assert_kicked(&mut raw).await;
}

#[tokio::test]
async fn revoking_a_key_or_changing_a_user_disconnects_them() {
    let w = World::start().await;
    let (key_user, key_secret) = create_api_key(&w.admin, "editor").await;
    let key_id = key_user.trim_start_matches("key:").to_owned();
    let mut by_key = Raw::login(&w.s.mqtt, V5, "k-1", &key_user, Some(&key_secret)).await;
    let (user, password) = create_user(&w.admin, "ops@example.com", "editor").await;
    let mut by_user = Raw::login(&w.s.mqtt, V5, "u-1", &user, Some(&password)).await;
    // Another identity's connection stays.
    let dev = w
        .admin
        .post("/api/v1/devices", json!({"id": "bystander"}))
        .await;
    let mut bystander = Raw::login(
        &w.s.mqtt,
        V5,
        "b-1",
        dev.json["token"].as_str().unwrap(),
        None,
    )
    .await;

    assert_eq!(
        w.admin
            .delete(&format!("/api/v1/api-keys/{key_id}"))
            .await
            .status,
        204
    );
    assert_kicked(&mut by_key).await;
    let me = w.admin.get("/api/v1/users").await;
    let user_id = me.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ops@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        w.admin
            .patch(
                &format!("/api/v1/users/{user_id}"),
                json!({"role": "viewer"})
            )
            .await
            .status,
        200
    );
    assert_kicked(&mut by_user).await;
    bystander
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
}

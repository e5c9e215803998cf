//! API keys never exceed their creator's current rights (issue 8): the key
//! view names its creator, demoting the creator limits its keys at once,
//! deleting the creator or revoking a key revokes the keys made from it.

use ferrule_mqtt::codec::{Packet, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{Raw, V5};
use crate::util::{Api, Server, tenant_with_owner};

/// Creates a key; returns (id, a client using it).
async fn key(s: &Server, by: &Api, role: &str) -> (String, Api) {
    let r = by
        .post("/api/v1/api-keys", json!({"name": role, "role": role}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.json["id"].as_str().unwrap().to_owned(),
        s.api(r.json["secret"].as_str().unwrap()),
    )
}

async fn my_id(api: &Api) -> String {
    api.get("/api/v1/auth/me").await.json["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn assert_kicked(raw: &mut Raw) {
    let closed = raw.expect_close().await;
    assert!(
        matches!(closed.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "expected DISCONNECT 0x98, got {closed:?}"
    );
}

#[tokio::test]
async fn keys_follow_their_creators_current_rights() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let owner = tenant_with_owner(&s, &admin, "acme").await;
    let owner_id = my_id(&owner).await;
    // A second owner, so the first may be demoted and deleted.
    let r = owner
        .post(
            "/api/v1/users",
            json!({"email": "o2@acme.example", "password": "password-1", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let owner2 = s.api(&s.login("o2@acme.example", "password-1").await);

    let (k1, by_k1) = key(&s, &owner, "owner").await;
    let (k2, by_k2) = key(&s, &by_k1, "editor").await;
    let view = owner.get(&format!("/api/v1/api-keys/{k1}")).await;
    assert_eq!(view.json["created_by"], owner_id.as_str(), "{}", view.text);
    let view = owner.get(&format!("/api/v1/api-keys/{k2}")).await;
    assert_eq!(view.json["created_by"], k1.as_str(), "{}", view.text);
    assert_eq!(by_k1.get("/api/v1/users").await.status, 200);
    let mut k1_mqtt = Raw::login(
        &s.mqtt,
        V5,
        "k1",
        &format!("key:{k1}"),
        Some(by_k1.token.as_deref().unwrap()),
    )
    .await;

    // Demoting the creator limits its key at once, over HTTP and MQTT.
    let r = owner2
        .patch(
            &format!("/api/v1/users/{owner_id}"),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let me = by_k1.get("/api/v1/auth/me").await;
    assert_eq!(me.json["role"], "viewer", "{}", me.text);
    by_k1.get("/api/v1/users").await.assert_problem(403);
    by_k1
        .post("/api/v1/devices", json!({"id": "d1"}))
        .await
        .assert_problem(403);
    assert_eq!(by_k2.get("/api/v1/auth/me").await.json["role"], "viewer");
    assert_kicked(&mut k1_mqtt).await;
    // Promoted again, the key gets its own role back (never more).
    let r = owner2
        .patch(
            &format!("/api/v1/users/{owner_id}"),
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(by_k1.get("/api/v1/auth/me").await.json["role"], "owner");
    assert_eq!(by_k2.get("/api/v1/auth/me").await.json["role"], "editor");

    // Deleting the creator revokes its keys, and the keys they made.
    let mut k2_mqtt = Raw::login(
        &s.mqtt,
        V5,
        "k2",
        &format!("key:{k2}"),
        Some(by_k2.token.as_deref().unwrap()),
    )
    .await;
    assert_eq!(
        owner2
            .delete(&format!("/api/v1/users/{owner_id}"))
            .await
            .status,
        204
    );
    by_k1.get("/api/v1/auth/me").await.assert_problem(401);
    by_k2.get("/api/v1/auth/me").await.assert_problem(401);
    for id in [&k1, &k2] {
        let v = owner2.get(&format!("/api/v1/api-keys/{id}")).await;
        v.assert_problem(404);
    }
    assert_kicked(&mut k2_mqtt).await;

    // Revoking a key revokes the keys it made.
    let (k3, by_k3) = key(&s, &owner2, "owner").await;
    let (_, by_k4) = key(&s, &by_k3, "viewer").await;
    assert_eq!(by_k4.get("/api/v1/auth/me").await.status, 200);
    assert_eq!(
        owner2
            .delete(&format!("/api/v1/api-keys/{k3}"))
            .await
            .status,
        204
    );
    by_k4.get("/api/v1/auth/me").await.assert_problem(401);
    s.stop().await;
}

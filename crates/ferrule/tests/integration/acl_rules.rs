//! Tenant ACL rules over the API: what an owner writes, who may read and
//! change them, what is refused, and that another tenant sees none of it.

use serde_json::{Value, json};

use crate::util::{Api, Server, tenant_with_owner, viewer_editor_owner};

fn gateway_rule() -> Value {
    json!({
        "effect": "allow",
        "action": "publish",
        "topic": "devices/+/telemetry",
        "subject": "devices",
    })
}

async fn create(api: &Api, body: Value) -> String {
    let r = api.post("/api/v1/acl-rules", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn acl_rules_crud() {
    let s = Server::start().await;
    let admin = s.admin().await;
    assert_eq!(admin.get("/api/v1/acl-rules").await.json, json!([]));

    let r = admin.post("/api/v1/acl-rules", gateway_rule()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("acl_"), "{id}");
    assert_eq!(
        r.json,
        json!({
            "id": id, "effect": "allow", "action": "publish",
            "topic": "devices/+/telemetry", "subject": "devices", "priority": 0,
        }),
        "priority defaults to 0"
    );
    assert_eq!(
        admin.get(&format!("/api/v1/acl-rules/{id}")).await.json,
        r.json
    );

    let up = admin
        .patch(
            &format!("/api/v1/acl-rules/{id}"),
            json!({"topic": "devices/{device_id}/children/#", "priority": 10}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(
        (&up.json["topic"], &up.json["priority"], &up.json["effect"]),
        (
            &json!("devices/{device_id}/children/#"),
            &json!(10),
            &json!("allow")
        ),
        "unchanged fields stay"
    );
    assert_eq!(
        admin.get(&format!("/api/v1/acl-rules/{id}")).await.json,
        up.json
    );
    let same = admin
        .patch(&format!("/api/v1/acl-rules/{id}"), json!({}))
        .await;
    assert_eq!(same.json, up.json, "an empty change changes nothing");

    assert_eq!(
        admin
            .delete(&format!("/api/v1/acl-rules/{id}"))
            .await
            .status,
        204
    );
    admin
        .get(&format!("/api/v1/acl-rules/{id}"))
        .await
        .assert_problem(404);
    admin
        .delete(&format!("/api/v1/acl-rules/{id}"))
        .await
        .assert_problem(404);
    admin
        .patch(&format!("/api/v1/acl-rules/{id}"), json!({"priority": 1}))
        .await
        .assert_problem(404);
    assert_eq!(admin.get("/api/v1/acl-rules").await.json, json!([]));
    s.stop().await;
}

#[tokio::test]
async fn rules_are_listed_in_the_order_they_are_tried() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let low = create(&admin, json!({"effect": "deny", "action": "all", "topic": "#", "subject": "anonymous", "priority": -5})).await;
    let allow = create(&admin, json!({"effect": "allow", "action": "subscribe", "topic": "alerts/#", "subject": "all", "priority": 3})).await;
    let deny = create(&admin, json!({"effect": "deny", "action": "publish", "topic": "alerts/#", "subject": "users", "priority": 3})).await;
    let mut first = gateway_rule();
    first["priority"] = json!(9);
    let top = create(&admin, first).await;
    let list = admin.get("/api/v1/acl-rules").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        ids(&list.json),
        [&top, &deny, &allow, &low],
        "priority first, deny before allow at equal priority"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_rules_are_refused_naming_the_field() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let with = |k: &str, v: Value| {
        let mut b = gateway_rule();
        b[k] = v;
        b
    };
    let mut missing_topic = gateway_rule();
    missing_topic.as_object_mut().unwrap().remove("topic");
    let cases = [
        (with("topic", json!("devices/#/telemetry")), "topic"),
        (with("topic", json!("devices/a+")), "topic"),
        (with("topic", json!("")), "topic"),
        (with("topic", json!("devices/x{device_id}/#")), "topic"),
        (with("topic", json!("devices/{device}/#")), "topic"),
        (with("topic", json!("a/".repeat(600))), "topic"),
        (with("topic", json!(7)), "topic"),
        (missing_topic, "topic"),
        (with("effect", json!("maybe")), "effect"),
        (with("action", json!("read")), "action"),
        (with("subject", json!("admins")), "subject"),
        (with("priority", json!("high")), "priority"),
        (with("priority", json!(1u64 << 40)), "priority"),
        (with("colour", json!("red")), "colour"),
    ];
    for (body, field) in cases {
        let r = admin.post("/api/v1/acl-rules", body.clone()).await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{body}: {}", r.text);
    }
    let id = create(&admin, gateway_rule()).await;
    for (body, field) in [
        (json!({"topic": "#/x"}), "topic"),
        (json!({"effect": "permit"}), "effect"),
        (json!({"id": "acl_mine"}), "id"),
    ] {
        let r = admin
            .patch(&format!("/api/v1/acl-rules/{id}"), body.clone())
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{body}: {}", r.text);
    }
    let list = admin.get("/api/v1/acl-rules").await;
    assert_eq!(ids(&list.json), [id.as_str()], "nothing else written");
    assert_eq!(list.json[0]["topic"], "devices/+/telemetry", "nor changed");
    s.stop().await;
}

#[tokio::test]
async fn every_role_reads_rules_and_only_owners_and_admins_change_them() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let id = create(&admin, gateway_rule()).await;
    let rule = format!("/api/v1/acl-rules/{id}");
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "ci", "role": "editor"}))
        .await;
    let key = s.api(key.json["secret"].as_str().unwrap());
    let [viewer, editor, owner] = viewer_editor_owner(&s, &admin).await;

    for (who, api) in [
        ("viewer", &viewer),
        ("editor", &editor),
        ("editor key", &key),
    ] {
        assert_eq!(
            ids(&api.get("/api/v1/acl-rules").await.json),
            [id.as_str()],
            "{who}"
        );
        assert_eq!(api.get(&rule).await.json["id"], id.as_str(), "{who}");
        api.post("/api/v1/acl-rules", gateway_rule())
            .await
            .assert_problem(403);
        api.patch(&rule, json!({"effect": "deny"}))
            .await
            .assert_problem(403);
        api.delete(&rule).await.assert_problem(403);
    }
    assert_eq!(admin.get(&rule).await.json["effect"], "allow", "unchanged");

    let mine = create(&owner, gateway_rule()).await;
    assert_eq!(
        owner.patch(&rule, json!({"effect": "deny"})).await.json["effect"],
        "deny"
    );
    assert_eq!(owner.delete(&rule).await.status, 204);
    assert_eq!(
        ids(&viewer.get("/api/v1/acl-rules").await.json),
        [mine.as_str()]
    );
    s.stop().await;
}

#[tokio::test]
async fn another_tenants_rules_are_out_of_sight() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let id = create(&admin, gateway_rule()).await;
    let beta = tenant_with_owner(&s, &admin, "beta").await;
    let theirs = format!("/api/v1/acl-rules/{id}");
    let missing = "/api/v1/acl-rules/acl_0000000000000000";
    for (a, b) in [
        (beta.get(&theirs).await, beta.get(missing).await),
        (
            beta.patch(&theirs, json!({"effect": "deny"})).await,
            beta.patch(missing, json!({"effect": "deny"})).await,
        ),
        (beta.delete(&theirs).await, beta.delete(missing).await),
    ] {
        a.assert_problem(404);
        assert_eq!(
            (a.status, &a.json),
            (b.status, &b.json),
            "like a missing rule"
        );
    }
    assert_eq!(beta.get("/api/v1/acl-rules").await.json, json!([]));
    let own = create(&beta, gateway_rule()).await;
    assert_eq!(
        ids(&admin.get("/api/v1/acl-rules").await.json),
        [id.as_str()]
    );
    assert_eq!(admin.get(&theirs).await.json["effect"], "allow");
    // An admin reaches beta's rules only by naming the tenant.
    let as_beta = admin.clone().with_header("X-Tenant", "beta");
    assert_eq!(
        ids(&as_beta.get("/api/v1/acl-rules").await.json),
        [own.as_str()]
    );
    // Deleting the tenant deletes its rules; a new tenant of that name starts
    // with none.
    assert_eq!(admin.delete("/api/v1/tenants/beta").await.status, 204);
    let beta = tenant_with_owner(&s, &admin, "beta").await;
    assert_eq!(beta.get("/api/v1/acl-rules").await.json, json!([]));
    s.stop().await;
}

//! Changing users (issue 8, "Privilege and tenancy"): every change to a user
//! needs a caller who outranks or equals the user's current role, one's own
//! password or email needs the current password, and the last admin of the
//! instance and the last owner of a tenant stay.

use ferrule_mqtt::codec::{Packet, ReasonCode};
use serde_json::json;

use crate::mqtt_util::{Raw, V5};
use crate::telemetry_util::metric;
use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Server, tenant_with_owner};

async fn my_id(api: &Api) -> String {
    let me = api.get("/api/v1/auth/me").await;
    assert_eq!(me.status, 200, "{}", me.text);
    me.json["id"].as_str().unwrap().to_owned()
}

async fn create_user(api: &Api, email: &str, role: &str) -> String {
    let r = api
        .post(
            "/api/v1/users",
            json!({"email": email, "password": "password-1", "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn login_status(s: &Server, email: &str, password: &str) -> u16 {
    s.anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
        .status
}

/// The headline attack: an owner of tenant `default`, by session or by an
/// owner API key, sets the instance admin's password and logs in as admin.
#[tokio::test]
async fn an_owner_cannot_take_over_the_instance_admin() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let admin_id = my_id(&admin).await;
    create_user(&admin, "owner@x.io", "owner").await;
    let owner = s.api(&s.login("owner@x.io", "password-1").await);
    let k = owner
        .post("/api/v1/api-keys", json!({"name": "k", "role": "owner"}))
        .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let owner_key = s.api(k.json["secret"].as_str().unwrap());
    let target = format!("/api/v1/users/{admin_id}");

    for caller in [&owner, &owner_key] {
        caller
            .patch(&target, json!({"password": "taken-over-1"}))
            .await
            .assert_problem(403);
        caller
            .patch(&target, json!({"email": "mine@x.io"}))
            .await
            .assert_problem(403);
        caller
            .patch(&target, json!({"role": "owner"}))
            .await
            .assert_problem(403);
        caller.delete(&target).await.assert_problem(403);
    }
    assert_eq!(login_status(&s, ADMIN_EMAIL, "taken-over-1").await, 401);
    assert_eq!(login_status(&s, ADMIN_EMAIL, ADMIN_PASSWORD).await, 200);
    assert_eq!(
        admin.get("/api/v1/tenants").await.status,
        200,
        "admin session lives"
    );

    // An owner still manages users at or below its role, and never raises
    // itself.
    let editor = create_user(&owner, "ed@x.io", "editor").await;
    assert_eq!(
        owner
            .patch(
                &format!("/api/v1/users/{editor}"),
                json!({"password": "password-2"})
            )
            .await
            .status,
        200
    );
    let owner_id = my_id(&owner).await;
    owner
        .patch(
            &format!("/api/v1/users/{owner_id}"),
            json!({"role": "admin"}),
        )
        .await
        .assert_problem(403);
    s.stop().await;
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one_and_ends_other_sessions() {
    let s = Server::start().await;
    let admin = s.admin().await;
    create_user(&admin, "v@x.io", "viewer").await;
    let this = s.api(&s.login("v@x.io", "password-1").await);
    let other = s.api(&s.login("v@x.io", "password-1").await);
    let me = my_id(&this).await;
    let mut mqtt = Raw::login(&s.mqtt, V5, "v-1", "user:v@x.io", Some("password-1")).await;
    let path = format!("/api/v1/users/{me}");

    let r = this.patch(&path, json!({"password": "password-2"})).await;
    let detail = r.assert_problem(403).json["detail"].to_string();
    assert!(detail.contains("current_password"), "{detail}");
    let failures = r#"ferrule_auth_failures_total{transport="http",reason="invalid"}"#;
    let before = metric(&s, failures).await;
    this.patch(
        &path,
        json!({"password": "password-2", "current_password": "wrong-one"}),
    )
    .await
    .assert_problem(403);
    assert_eq!(metric(&s, failures).await, before + 1.0, "counted");
    assert_eq!(login_status(&s, "v@x.io", "password-2").await, 401);

    let r = this
        .patch(
            &path,
            json!({"password": "password-2", "current_password": "password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        this.get("/api/v1/devices").await.status,
        200,
        "this session stays"
    );
    other.get("/api/v1/devices").await.assert_problem(401);
    let closed = mqtt.expect_close().await;
    assert!(
        matches!(closed.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "{closed:?}"
    );
    assert_eq!(login_status(&s, "v@x.io", "password-1").await, 401);
    assert_eq!(login_status(&s, "v@x.io", "password-2").await, 200);

    // One's own email too; and a current password is only for oneself.
    this.patch(&path, json!({"email": "v2@x.io"}))
        .await
        .assert_problem(403);
    let r = this
        .patch(
            &path,
            json!({"email": "v2@x.io", "current_password": "password-2"}),
        )
        .await;
    assert_eq!(r.json["email"], "v2@x.io", "{}", r.text);
    assert_eq!(login_status(&s, "v2@x.io", "password-2").await, 200);
    // Another user's password needs no current one; one given is ignored.
    let r = admin
        .patch(
            &path,
            json!({"password": "password-3", "current_password": "anything"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(login_status(&s, "v2@x.io", "password-3").await, 200);
    s.stop().await;
}

#[tokio::test]
async fn an_owner_changes_a_users_email_validated_and_unique() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let ed = create_user(&admin, "ed@x.io", "editor").await;
    create_user(&admin, "taken@x.io", "viewer").await;
    let path = format!("/api/v1/users/{ed}");
    let r = admin.patch(&path, json!({"email": "not-an-email"})).await;
    assert_eq!(r.assert_problem(400).json["field"], "email");
    admin
        .patch(&path, json!({"email": "TAKEN@x.io"}))
        .await
        .assert_problem(409);
    let r = admin.patch(&path, json!({"email": "edith@x.io"})).await;
    assert_eq!(
        (r.status, r.json["email"].as_str()),
        (200, Some("edith@x.io"))
    );
    assert_eq!(login_status(&s, "edith@x.io", "password-1").await, 200);
    assert_eq!(login_status(&s, "ed@x.io", "password-1").await, 401);
    s.stop().await;
}

#[tokio::test]
async fn the_last_admin_and_the_last_owner_of_a_tenant_stay() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let admin_id = my_id(&admin).await;

    // The instance keeps an admin.
    let r = admin
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            json!({"role": "owner"}),
        )
        .await;
    r.assert_problem(409);
    assert!(
        r.json["detail"].as_str().unwrap().contains("no admin"),
        "{}",
        r.text
    );
    let second = create_user(&admin, "admin2@x.io", "admin").await;
    let admin2 = s.api(&s.login("admin2@x.io", "password-1").await);
    assert_eq!(
        admin2
            .patch(
                &format!("/api/v1/users/{admin_id}"),
                json!({"role": "owner"})
            )
            .await
            .status,
        200
    );
    admin2
        .patch(
            &format!("/api/v1/users/{second}"),
            json!({"role": "editor"}),
        )
        .await
        .assert_problem(409);

    // Admins count as owners of tenant `default`: its only owner may go.
    let owner_default = create_user(&admin2, "od@x.io", "owner").await;
    assert_eq!(
        admin2
            .delete(&format!("/api/v1/users/{owner_default}"))
            .await
            .status,
        204
    );

    // A tenant keeps an owner, against demotion and deletion.
    let acme = tenant_with_owner(&s, &admin2, "acme").await;
    let o1 = my_id(&acme).await;
    let in_acme = admin2.clone().with_header("X-Tenant", "acme");
    let r = in_acme
        .patch(&format!("/api/v1/users/{o1}"), json!({"role": "editor"}))
        .await;
    r.assert_problem(409);
    assert_eq!(
        r.json["detail"],
        "tenant acme would have no owner; promote another user first"
    );
    in_acme
        .delete(&format!("/api/v1/users/{o1}"))
        .await
        .assert_problem(409);

    // Two owners demoting each other at once: exactly one succeeds.
    let o2 = create_user(&acme, "o2@acme.example", "owner").await;
    let acme2 = s.api(&s.login("o2@acme.example", "password-1").await);
    let (to_o2, to_o1) = (format!("/api/v1/users/{o2}"), format!("/api/v1/users/{o1}"));
    let (a, b) = tokio::join!(
        acme.patch(&to_o2, json!({"role": "editor"})),
        acme2.patch(&to_o1, json!({"role": "editor"})),
    );
    let ok = [a.status, b.status].iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 1, "{} / {}", a.text, b.text);
    let users = in_acme.get("/api/v1/users").await;
    let owners = users.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "owner")
        .count();
    assert_eq!(owners, 1, "{}", users.text);
    s.stop().await;
}

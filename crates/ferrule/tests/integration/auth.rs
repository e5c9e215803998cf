//! Authentication and roles: wrong passwords, expired and revoked tokens and
//! keys, what each role may do.

use std::time::Duration;

use serde_json::json;

use crate::util::{ADMIN_EMAIL, Server, ServerBuilder, USER_PASSWORD, viewer_editor_owner};

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let s = Server::start().await;
    let a = s
        .anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": ADMIN_EMAIL, "password": "nope"}),
        )
        .await;
    let b = s
        .anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": "who@x.y", "password": "nope"}),
        )
        .await;
    a.assert_problem(401);
    b.assert_problem(401);
    assert_eq!(a.json, b.json);
    // Missing, malformed and unknown bearer tokens.
    s.anon().get("/api/v1/devices").await.assert_problem(401);
    s.api("fs_0000")
        .get("/api/v1/devices")
        .await
        .assert_problem(401);
    s.api("garbage")
        .get("/api/v1/devices")
        .await
        .assert_problem(401);
    let metrics = s.anon().get("/metrics").await.text;
    assert!(metrics.contains("ferrule_auth_failures_total"), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let s = ServerBuilder::new()
        .env("FERRULE_HTTP_SESSION_TTL", "1s")
        .start()
        .await;
    let admin = s.admin().await;
    assert_eq!(admin.get("/api/v1/devices").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    admin.get("/api/v1/devices").await.assert_problem(401);
    s.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_only() {
    let s = Server::start().await;
    let a = s.admin().await;
    let b = s.admin().await;
    assert_eq!(a.post("/api/v1/auth/logout", json!({})).await.status, 204);
    a.get("/api/v1/devices").await.assert_problem(401);
    assert_eq!(
        b.get("/api/v1/devices").await.status,
        200,
        "other sessions live on"
    );
    s.stop().await;
}

#[tokio::test]
async fn revoked_and_expired_api_keys_are_refused() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let k = admin
        .post("/api/v1/api-keys", json!({"name": "ci", "role": "editor"}))
        .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let key = s.api(k.json["secret"].as_str().unwrap());
    assert_eq!(
        key.post("/api/v1/devices", json!({"id": "by-key"}))
            .await
            .status,
        201
    );
    let me = key.get("/api/v1/auth/me").await;
    assert_eq!(
        (me.json["kind"].as_str(), me.json["role"].as_str()),
        (Some("api_key"), Some("editor"))
    );
    let id = k.json["id"].as_str().unwrap();
    assert_eq!(
        admin.delete(&format!("/api/v1/api-keys/{id}")).await.status,
        204
    );
    key.get("/api/v1/devices").await.assert_problem(401);
    // Gone from the API like any deleted resource; the listing keeps it,
    // with `revoked_at`, for audit.
    admin
        .get(&format!("/api/v1/api-keys/{id}"))
        .await
        .assert_problem(404);
    let listed = admin.get("/api/v1/api-keys").await;
    let item = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("revoked keys stay listed: {}", listed.text));
    assert!(item["revoked_at"].is_string(), "{item}");

    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let k = admin
        .post(
            "/api/v1/api-keys",
            json!({"name": "brief", "role": "viewer", "expires_at": soon.to_string()}),
        )
        .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let key = s.api(k.json["secret"].as_str().unwrap());
    assert_eq!(key.get("/api/v1/devices").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    key.get("/api/v1/devices").await.assert_problem(401);
    // An expiry in the past makes a key that is expired from the start.
    let r = admin
        .post(
            "/api/v1/api-keys",
            json!({"name": "x", "role": "viewer", "expires_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let expired = s.api(r.json["secret"].as_str().unwrap());
    expired.get("/api/v1/devices").await.assert_problem(401);
    s.stop().await;
}

#[tokio::test]
async fn roles_limit_what_callers_may_do() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let [viewer, editor, owner] = viewer_editor_owner(&s, &admin).await;
    assert_eq!(
        admin
            .post("/api/v1/devices", json!({"id": "d0"}))
            .await
            .status,
        201
    );

    // Viewers read, never write.
    assert_eq!(viewer.get("/api/v1/devices").await.status, 200);
    assert_eq!(viewer.get("/api/v1/devices/d0").await.status, 200);
    viewer
        .post("/api/v1/devices", json!({"id": "v1"}))
        .await
        .assert_problem(403);
    viewer
        .patch("/api/v1/devices/d0", json!({"name": "x"}))
        .await
        .assert_problem(403);
    viewer
        .delete("/api/v1/devices/d0")
        .await
        .assert_problem(403);
    viewer
        .post("/api/v1/devices/d0/credentials", json!({"type": "token"}))
        .await
        .assert_problem(403);
    viewer.get("/api/v1/users").await.assert_problem(403);
    viewer
        .post("/api/v1/api-keys", json!({"name": "k", "role": "viewer"}))
        .await
        .assert_problem(403);

    // Editors write devices but do not manage access.
    assert_eq!(
        editor
            .post("/api/v1/devices", json!({"id": "e1"}))
            .await
            .status,
        201
    );
    editor.get("/api/v1/users").await.assert_problem(403);
    editor
        .post(
            "/api/v1/users",
            json!({"email": "z@x.io", "password": "password-1", "role": "viewer"}),
        )
        .await
        .assert_problem(403);

    // Owners manage access up to their own role; tenants are for admins.
    assert_eq!(owner.get("/api/v1/users").await.status, 200);
    owner
        .post("/api/v1/api-keys", json!({"name": "k", "role": "admin"}))
        .await
        .assert_problem(403);
    assert_eq!(
        owner
            .post("/api/v1/api-keys", json!({"name": "k", "role": "owner"}))
            .await
            .status,
        201
    );
    owner.get("/api/v1/tenants").await.assert_problem(403);
    owner
        .post("/api/v1/tenants", json!({"id": "t2"}))
        .await
        .assert_problem(403);
    let admin_id = admin.get("/api/v1/auth/me").await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .delete(&format!("/api/v1/users/{admin_id}"))
        .await
        .assert_problem(403);
    owner
        .patch(
            &format!("/api/v1/users/{admin_id}"),
            json!({"role": "viewer"}),
        )
        .await
        .assert_problem(403);
    // Only admins may switch tenants.
    owner
        .clone()
        .with_header("X-Tenant", "other")
        .get("/api/v1/devices")
        .await
        .assert_problem(403);

    // A demotion ends the user's sessions at once.
    let editor_id = editor.get("/api/v1/auth/me").await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        owner
            .patch(
                &format!("/api/v1/users/{editor_id}"),
                json!({"role": "viewer"})
            )
            .await
            .status,
        200
    );
    editor.get("/api/v1/devices").await.assert_problem(401);
    let demoted = s.api(&s.login("e@x.io", USER_PASSWORD).await);
    demoted
        .post("/api/v1/devices", json!({"id": "e2"}))
        .await
        .assert_problem(403);

    // Anyone may change their own password (given the current one), not
    // their own role.
    let viewer_id = viewer.get("/api/v1/auth/me").await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        viewer
            .patch(
                &format!("/api/v1/users/{viewer_id}"),
                json!({"password": "password-2", "current_password": USER_PASSWORD})
            )
            .await
            .status,
        200
    );
    let viewer = s.api(&s.login("v@x.io", "password-2").await);
    viewer
        .patch(
            &format!("/api/v1/users/{viewer_id}"),
            json!({"role": "owner"}),
        )
        .await
        .assert_problem(403);
    // Nobody deletes themselves.
    owner
        .delete(&format!(
            "/api/v1/users/{}",
            owner.get("/api/v1/auth/me").await.json["id"]
                .as_str()
                .unwrap()
        ))
        .await
        .assert_problem(409);
    s.stop().await;
}

#[tokio::test]
async fn the_first_admin_gets_a_random_password_printed_once() {
    let s = ServerBuilder::new().random_admin_password().start().await;
    let out = s.stdout();
    let password = out
        .split("with password ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("password printed on first start")
        .to_owned();
    assert!(password.len() >= 16);
    s.login(ADMIN_EMAIL, &password).await;
    let (dir, data) = s.stop_keep_dir().await;
    let again = ServerBuilder::new()
        .random_admin_password()
        .data_dir(data)
        .start()
        .await;
    assert!(!again.stdout().contains(&password) && !again.stdout().contains("with password"));
    again.login(ADMIN_EMAIL, &password).await;
    again.stop().await;
    drop(dir);
}

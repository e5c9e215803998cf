//! Tenant isolation: walk every route of the OpenAPI document with another
//! tenant's credentials and check that nothing leaks — asking for another
//! tenant's object answers exactly as asking for a missing one.

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::{Api, Resp, Server, tenant_with_owner};

/// A plausible body for each route, so that body validation passes and the
/// lookup itself decides the answer.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    match (method.as_str(), path) {
        ("GET" | "DELETE", _) => None,
        (_, p) if p.ends_with("/rotate") || p.ends_with("/logout") => Some(json!({})),
        (_, p) if p.ends_with("/credentials") => Some(json!({"type": "token"})),
        ("PATCH", "/api/v1/devices/{id}") => Some(json!({"name": "hijacked", "enabled": false})),
        ("PATCH", "/api/v1/users/{id}") => Some(json!({"password": "hijacked-password"})),
        ("PATCH", "/api/v1/tenants/{id}") => Some(json!({"name": "hijacked"})),
        ("POST", "/api/v1/devices") => Some(json!({"id": "beta-own"})),
        ("POST", "/api/v1/acl-rules") => {
            Some(json!({"effect": "allow", "action": "all", "topic": "beta/#", "subject": "all"}))
        }
        ("PATCH", "/api/v1/acl-rules/{id}") => Some(json!({"effect": "deny", "topic": "#"})),
        ("POST", "/api/v1/api-keys") => Some(json!({"name": "mine", "role": "viewer"})),
        ("POST", "/api/v1/users") => {
            Some(json!({"email": "new@beta.example", "password": "password-1", "role": "viewer"}))
        }
        ("POST", "/api/v1/tenants") => Some(json!({"id": "gamma"})),
        ("POST", "/api/v1/auth/login") => Some(json!({"email": "nobody@x.y", "password": "x"})),
        _ => Some(json!({})),
    }
}

/// Normalises what may legitimately differ between two otherwise equal answers.
fn shape(r: &Resp) -> (u16, Value) {
    (r.status, r.json.clone())
}

#[tokio::test]
async fn another_tenant_learns_nothing_on_any_route() {
    let s = Server::start().await;
    let admin = s.admin().await;
    // Tenant default's objects.
    let dev = admin
        .post(
            "/api/v1/devices",
            json!({"id": "pump", "attributes": {"secret-attr": "alpha-only"}}),
        )
        .await;
    let cred_id = dev.json["credential_id"].as_str().unwrap().to_owned();
    let device_token = dev.json["token"].as_str().unwrap().to_owned();
    let key = admin
        .post(
            "/api/v1/api-keys",
            json!({"name": "alpha-key", "role": "viewer"}),
        )
        .await;
    let key_id = key.json["id"].as_str().unwrap().to_owned();
    let key_secret = key.json["secret"].as_str().unwrap().to_owned();
    let user = admin
        .post(
            "/api/v1/users",
            json!({"email": "alpha-user@x.io", "password": "password-1", "role": "editor"}),
        )
        .await;
    let user_id = user.json["id"].as_str().unwrap().to_owned();
    let rule = admin
        .post(
            "/api/v1/acl-rules",
            json!({"effect": "allow", "action": "publish", "topic": "alpha-only/#", "subject": "devices"}),
        )
        .await;
    let rule_id = rule.json["id"].as_str().unwrap().to_owned();

    // Tenant beta's owner walks every route.
    let beta: Api = tenant_with_owner(&s, &admin, "beta").await;
    let api: Value = s.anon().get("/api/openapi.json").await.json;
    let paths = api["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "every route is described");
    let mut walked = 0;
    for (template, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            if template == "/api/v1/auth/logout" {
                continue; // would end beta's own session; covered in auth.rs
            }
            let body = body_for(&method, template);
            if template.contains('{') {
                let existing = template
                    .replace(
                        "{id}",
                        if template.contains("api-keys") {
                            &key_id
                        } else if template.contains("acl-rules") {
                            &rule_id
                        } else if template.contains("users") {
                            &user_id
                        } else if template.contains("tenants") {
                            "default"
                        } else {
                            "pump"
                        },
                    )
                    .replace("{credential_id}", &cred_id);
                let missing = template
                    .replace(
                        "{id}",
                        if template.contains("tenants") {
                            "no-such-tenant"
                        } else {
                            "no-such-object"
                        },
                    )
                    .replace("{credential_id}", "c_0000000000000000");
                let a = beta.send(method.clone(), &existing, body.clone()).await;
                let b = beta.send(method.clone(), &missing, body.clone()).await;
                assert_eq!(
                    shape(&a),
                    shape(&b),
                    "{method} {template}: another tenant's object answers unlike a missing one"
                );
                assert!(
                    a.status >= 400,
                    "{method} {existing} must not succeed across tenants: {}",
                    a.text
                );
            } else {
                let r = beta.send(method.clone(), template, body).await;
                for leak in [
                    "alpha-only",
                    "alpha-key",
                    "alpha-user@x.io",
                    &key_id,
                    &user_id,
                    &cred_id,
                    &rule_id,
                ] {
                    assert!(
                        !r.text.contains(leak),
                        "{method} {template} leaked {leak}: {}",
                        r.text
                    );
                }
            }
            walked += 1;
        }
    }
    assert!(walked >= 25, "walked {walked} operations");

    // Tenant default's objects are untouched.
    let d = admin.get("/api/v1/devices/pump").await;
    assert_eq!(
        (d.json["name"].as_str(), d.json["enabled"].as_bool()),
        (Some("pump"), Some(true))
    );
    assert_eq!(
        admin
            .get("/api/v1/devices/pump/credentials")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.api(&key_secret).get("/api/v1/devices").await.status,
        200,
        "the key still works"
    );
    let r = admin.get(&format!("/api/v1/acl-rules/{rule_id}")).await;
    assert_eq!(
        (r.json["effect"].as_str(), r.json["topic"].as_str()),
        (Some("allow"), Some("alpha-only/#"))
    );
    s.login("alpha-user@x.io", "password-1").await;
    assert!(!device_token.is_empty());
    // Beta's own objects are its own, and a device id taken in another tenant
    // is free here: a 409 would reveal it.
    assert_eq!(beta.get("/api/v1/devices/beta-own").await.status, 200);
    assert_eq!(
        beta.post("/api/v1/devices", json!({"id": "pump"}))
            .await
            .status,
        201
    );
    let listing = beta.get("/api/v1/devices").await;
    assert_eq!(listing.json["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn admins_act_in_another_tenant_only_when_asked() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let beta = tenant_with_owner(&s, &admin, "beta").await;
    assert_eq!(
        beta.post("/api/v1/devices", json!({"id": "b1"}))
            .await
            .status,
        201
    );
    admin.get("/api/v1/devices/b1").await.assert_problem(404);
    let as_beta = admin.clone().with_header("X-Tenant", "beta");
    assert_eq!(as_beta.get("/api/v1/devices/b1").await.status, 200);
    assert_eq!(as_beta.get("/api/v1/auth/me").await.json["tenant"], "beta");
    admin
        .clone()
        .with_header("X-Tenant", "nope")
        .get("/api/v1/devices")
        .await
        .assert_problem(404);
    admin
        .clone()
        .with_header("X-Tenant", "bad/id")
        .get("/api/v1/devices")
        .await
        .assert_problem(400);
    // Deleting a tenant removes what it owns; default stays.
    assert_eq!(admin.delete("/api/v1/tenants/beta").await.status, 204);
    beta.get("/api/v1/devices").await.assert_problem(401);
    admin
        .delete("/api/v1/tenants/default")
        .await
        .assert_problem(409);
    s.stop().await;
}

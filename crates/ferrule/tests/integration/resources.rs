//! The resources of the API as a script would use them: create, read, update,
//! delete, and page through listings.

use serde_json::json;

use crate::util::Server;

#[tokio::test]
async fn devices_crud_and_pagination() {
    let s = Server::start().await;
    let admin = s.admin().await;
    // A device names a profile the tenant has.
    let r = admin
        .post("/api/v1/device-profiles", json!({"name": "pump"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .post("/api/v1/devices", json!({"id": "pump-1", "name": "Pump 1", "profile": "pump", "attributes": {"site": "north"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["id"], "pump-1");
    assert_eq!(r.json["profile"], "pump");
    assert_eq!(r.json["attributes"]["site"], "north");
    assert!(r.json["token"].as_str().unwrap().starts_with("fd_"));
    let minimal = admin.post("/api/v1/devices", json!({"id": "bare"})).await;
    assert_eq!(
        (
            minimal.json["name"].as_str(),
            minimal.json["profile"].as_str()
        ),
        (Some("bare"), Some("default"))
    );

    let up = admin
        .patch(
            "/api/v1/devices/pump-1",
            json!({"name": "Pump One", "enabled": false}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(
        (up.json["name"].as_str(), up.json["enabled"].as_bool()),
        (Some("Pump One"), Some(false))
    );
    assert_eq!(
        up.json["attributes"]["site"], "north",
        "unchanged fields stay"
    );
    assert_eq!(
        admin.get("/api/v1/devices/pump-1").await.json["name"],
        "Pump One"
    );

    for i in 0..25 {
        assert_eq!(
            admin
                .post("/api/v1/devices", json!({"id": format!("d{i:02}")}))
                .await
                .status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=10&cursor={c}"),
            None => "/api/v1/devices?limit=10".to_owned(),
        };
        let page = admin.get(&q).await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        seen.extend(
            page.json["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        match page.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 27);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "each device once, in id order");

    assert_eq!(admin.delete("/api/v1/devices/pump-1").await.status, 204);
    admin
        .get("/api/v1/devices/pump-1")
        .await
        .assert_problem(404);
    admin
        .delete("/api/v1/devices/pump-1")
        .await
        .assert_problem(404);
    s.stop().await;
}

#[tokio::test]
async fn credentials_add_list_rotate_revoke() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let d = admin.post("/api/v1/devices", json!({"id": "gw"})).await;
    let first = d.json["credential_id"].as_str().unwrap().to_owned();
    let fp = format!("sha256:{}", "AB:".repeat(31) + "AB");
    let x = admin
        .post(
            "/api/v1/devices/gw/credentials",
            json!({"type": "x509", "fingerprint": fp}),
        )
        .await;
    assert_eq!(x.status, 201, "{}", x.text);
    assert_eq!(
        x.json["fingerprint"],
        format!("sha256:{}", "ab".repeat(32)),
        "normalised"
    );
    // The same certificate cannot identify two devices.
    admin.post("/api/v1/devices", json!({"id": "other"})).await;
    admin
        .post(
            "/api/v1/devices/other/credentials",
            json!({"type": "x509", "fingerprint": format!("sha256:{}", "ab".repeat(32))}),
        )
        .await
        .assert_problem(409);
    let p = admin
        .post(
            "/api/v1/devices/gw/credentials",
            json!({"type": "password", "password": "gateway-pass-1"}),
        )
        .await;
    assert_eq!(p.status, 201);
    let list = admin.get("/api/v1/devices/gw/credentials").await.json;
    assert_eq!(list.as_array().unwrap().len(), 3);
    // Only token credentials rotate.
    let rot = admin
        .post(
            &format!("/api/v1/devices/gw/credentials/{first}/rotate"),
            json!({}),
        )
        .await;
    assert_eq!(rot.status, 200, "{}", rot.text);
    assert_eq!(rot.json["id"], first.as_str());
    admin
        .post(
            &format!(
                "/api/v1/devices/gw/credentials/{}/rotate",
                x.json["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await
        .assert_problem(409);
    assert_eq!(
        admin
            .delete(&format!("/api/v1/devices/gw/credentials/{first}"))
            .await
            .status,
        204
    );
    assert_eq!(
        admin
            .get("/api/v1/devices/gw/credentials")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
    admin
        .delete(&format!("/api/v1/devices/gw/credentials/{first}"))
        .await
        .assert_problem(404);
    s.stop().await;
}

#[tokio::test]
async fn users_and_tenants_crud() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let t = admin
        .post("/api/v1/tenants", json!({"id": "acme", "name": "Acme"}))
        .await;
    assert_eq!(t.status, 201, "{}", t.text);
    admin
        .post("/api/v1/tenants", json!({"id": "acme"}))
        .await
        .assert_problem(409);
    assert_eq!(
        admin
            .patch("/api/v1/tenants/acme", json!({"name": "Acme Inc"}))
            .await
            .json["name"],
        "Acme Inc"
    );
    let ids: Vec<_> = admin.get("/api/v1/tenants").await.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["acme", "default"]);

    let u = admin
        .post(
            "/api/v1/users",
            json!({"email": "ed@x.io", "password": "password-1", "role": "editor"}),
        )
        .await;
    assert_eq!(u.status, 201, "{}", u.text);
    let id = u.json["id"].as_str().unwrap();
    admin
        .post(
            "/api/v1/users",
            json!({"email": "ED@x.io", "password": "password-1", "role": "viewer"}),
        )
        .await
        .assert_problem(409);
    admin
        .post(
            "/api/v1/users",
            json!({"email": "not-an-email", "password": "password-1", "role": "viewer"}),
        )
        .await
        .assert_problem(400);
    assert_eq!(
        admin.get(&format!("/api/v1/users/{id}")).await.json["role"],
        "editor"
    );
    assert_eq!(
        admin
            .patch(&format!("/api/v1/users/{id}"), json!({"role": "owner"}))
            .await
            .json["role"],
        "owner"
    );
    assert_eq!(
        admin.get("/api/v1/users").await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        admin.delete(&format!("/api/v1/users/{id}")).await.status,
        204
    );
    admin
        .get(&format!("/api/v1/users/{id}"))
        .await
        .assert_problem(404);
    // Admins belong to the default tenant.
    admin
        .clone()
        .with_header("X-Tenant", "acme")
        .post(
            "/api/v1/users",
            json!({"email": "a2@x.io", "password": "password-1", "role": "admin"}),
        )
        .await
        .assert_problem(403);
    assert_eq!(admin.delete("/api/v1/tenants/acme").await.status, 204);
    admin.get("/api/v1/tenants/acme").await.assert_problem(404);
    s.stop().await;
}

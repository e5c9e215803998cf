//! A secret is shown once, never returned again, and never stored in clear.

use serde_json::json;

use crate::util::Server;

#[tokio::test]
async fn secrets_are_shown_once_and_stored_hashed() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let dev = admin.post("/api/v1/devices", json!({"id": "pump"})).await;
    assert_eq!(dev.status, 201, "{}", dev.text);
    let device_token = dev.json["token"].as_str().unwrap().to_owned();
    assert!(device_token.len() >= 32);
    let extra = admin
        .post("/api/v1/devices/pump/credentials", json!({"type": "token"}))
        .await;
    assert_eq!(extra.status, 201, "{}", extra.text);
    let extra_token = extra.json["token"].as_str().unwrap().to_owned();
    let pw = admin
        .post(
            "/api/v1/devices/pump/credentials",
            json!({"type": "password", "password": "device-password-1"}),
        )
        .await;
    assert_eq!(pw.status, 201, "{}", pw.text);
    assert!(pw.json.get("token").is_none() && !pw.text.contains("device-password-1"));
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "ci", "role": "viewer"}))
        .await;
    let key_secret = key.json["secret"].as_str().unwrap().to_owned();
    let key_id = key.json["id"].as_str().unwrap().to_owned();
    let user = admin
        .post(
            "/api/v1/users",
            json!({"email": "u@x.io", "password": "user-password-1", "role": "viewer"}),
        )
        .await;
    assert!(!user.text.contains("user-password-1") && user.json.get("password_hash").is_none());
    let rotated = admin
        .post(
            &format!(
                "/api/v1/devices/pump/credentials/{}/rotate",
                extra.json["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let rotated_token = rotated.json["token"].as_str().unwrap().to_owned();
    assert_ne!(rotated_token, extra_token);

    let secrets = [
        device_token.as_str(),
        extra_token.as_str(),
        rotated_token.as_str(),
        key_secret.as_str(),
        "device-password-1",
        "user-password-1",
    ];
    // No read returns any of them.
    let reads = [
        "/api/v1/devices".to_owned(),
        "/api/v1/devices/pump".to_owned(),
        "/api/v1/devices/pump/credentials".to_owned(),
        "/api/v1/api-keys".to_owned(),
        format!("/api/v1/api-keys/{key_id}"),
        "/api/v1/users".to_owned(),
    ];
    for path in &reads {
        let r = admin.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        for secret in secrets {
            assert!(!r.text.contains(secret), "{path} leaked a secret");
        }
        assert!(!r.text.contains("hash"), "{path} shows a hash: {}", r.text);
    }
    let creds = admin.get("/api/v1/devices/pump/credentials").await;
    let kinds: Vec<_> = creds
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["token", "token", "password"]);

    // The store holds none of them in clear, not even in its WAL.
    let (dir, data) = s.stop_keep_dir().await;
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret is stored in clear"
            );
        }
    }
    drop(dir);
}

/// A response that carries a secret (a login token, a device token issued
/// or rotated, an API key's secret) must not be kept by a browser or a
/// proxy: `Cache-Control: no-store`.
#[tokio::test]
async fn responses_carrying_a_secret_are_not_stored_by_caches() {
    let s = Server::start().await;
    let login = s
        .anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": crate::util::ADMIN_EMAIL, "password": crate::util::ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let admin = s.api(login.json["token"].as_str().unwrap());
    let dev = admin.post("/api/v1/devices", json!({"id": "pump"})).await;
    let cred = admin
        .post("/api/v1/devices/pump/credentials", json!({"type": "token"}))
        .await;
    let rotated = admin
        .post(
            &format!(
                "/api/v1/devices/pump/credentials/{}/rotate",
                cred.json["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "ci", "role": "viewer"}))
        .await;
    for (what, r) in [
        ("login", &login),
        ("device", &dev),
        ("credential", &cred),
        ("rotated credential", &rotated),
        ("api key", &key),
    ] {
        assert!(r.status < 300, "{what}: {}", r.text);
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{what}"
        );
    }
    s.stop().await;
}

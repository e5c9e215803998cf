//! Hostile and malformed requests: always a 4xx problem+json, never a 500,
//! nothing written.

use reqwest::Method;
use serde_json::json;

use crate::util::{Server, ServerBuilder};

/// What is wrong, the body, its content type, the expected status and field.
type Case = (
    &'static str,
    Vec<u8>,
    &'static str,
    u16,
    Option<&'static str>,
);

async fn device_count(api: &crate::util::Api) -> usize {
    api.get("/api/v1/devices").await.json["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn malformed_bodies_are_refused_and_nothing_is_written() {
    let s = ServerBuilder::new()
        .arg("--http-max-body-bytes")
        .arg("4096")
        .start()
        .await;
    let admin = s.admin().await;
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            b"{\"id\": ".to_vec(),
            "application/json",
            400,
            None,
        ),
        (
            "not an object",
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
            None,
        ),
        (
            "unknown field",
            br#"{"id":"d1","colour":"red"}"#.to_vec(),
            "application/json",
            400,
            Some("colour"),
        ),
        (
            "wrong type",
            br#"{"id":17}"#.to_vec(),
            "application/json",
            400,
            Some("id"),
        ),
        (
            "bad id",
            br#"{"id":"a/b"}"#.to_vec(),
            "application/json",
            400,
            Some("id"),
        ),
        (
            "attributes not an object",
            br#"{"id":"d1","attributes":[1]}"#.to_vec(),
            "application/json",
            400,
            Some("attributes"),
        ),
        (
            "non-UTF-8",
            b"{\"id\":\"\xff\xfe\"}".to_vec(),
            "application/json",
            400,
            None,
        ),
        (
            "not JSON at all",
            b"id=d1".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            None,
        ),
        (
            "JSON sent as text",
            br#"{"id":"d1"}"#.to_vec(),
            "text/plain",
            415,
            None,
        ),
        (
            "oversized",
            format!(r#"{{"id":"d1","name":"{}"}}"#, "x".repeat(8000)).into_bytes(),
            "application/json",
            413,
            None,
        ),
        (
            "deep nesting",
            format!(
                r#"{{"id":"d1","attributes":{}{}}}"#,
                "{\"a\":".repeat(200),
                "}".repeat(200)
            )
            .into_bytes(),
            "application/json",
            400,
            None,
        ),
    ];
    for (what, body, ctype, status, field) in cases {
        let r = admin
            .raw(
                Method::POST,
                "/api/v1/devices",
                Some((body.as_slice(), ctype)),
            )
            .await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        r.assert_problem(status);
        if let Some(f) = field {
            assert_eq!(r.json["field"], f, "{what}: {}", r.text);
        }
    }
    assert_eq!(device_count(&admin).await, 0, "nothing written");
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        !metrics.contains("status=\"500\""),
        "no 500 ever: {metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused() {
    let s = Server::start().await;
    let admin = s.admin().await;
    for (q, field) in [
        ("limit=100000", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=not-base64!", "cursor"),
        ("cursor=A", "cursor"),
    ] {
        let r = admin.get(&format!("/api/v1/devices?{q}")).await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{q}: {}", r.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_methods_and_ids_are_problems() {
    let s = Server::start().await;
    let admin = s.admin().await;
    admin.get("/api/v1/nothing-here").await.assert_problem(404);
    admin
        .send(Method::PUT, "/api/v1/devices", Some(json!({})))
        .await
        .assert_problem(405);
    admin
        .get("/api/v1/devices/..%2F..%2Fetc")
        .await
        .assert_problem(404);
    admin
        .get(&format!("/api/v1/devices/{}", "x".repeat(5000)))
        .await
        .assert_problem(404);
    admin
        .post("/api/v1/devices/nope/credentials", json!({"type": "token"}))
        .await
        .assert_problem(404);
    let r = admin.post("/api/v1/devices", json!({"id": "d1"})).await;
    assert_eq!(r.status, 201);
    let r = admin
        .post(
            "/api/v1/devices/d1/credentials",
            json!({"type": "x509", "fingerprint": "md5:abc"}),
        )
        .await;
    assert_eq!(r.assert_problem(400).json["field"], "fingerprint");
    let r = admin
        .post(
            "/api/v1/devices/d1/credentials",
            json!({"type": "password", "password": "short"}),
        )
        .await;
    assert_eq!(r.assert_problem(400).json["field"], "password");
    let r = admin
        .post(
            "/api/v1/devices/d1/credentials",
            json!({"type": "telepathy"}),
        )
        .await;
    r.assert_problem(400);
    admin
        .post("/api/v1/devices", json!({"id": "d1"}))
        .await
        .assert_problem(409);
    s.stop().await;
}

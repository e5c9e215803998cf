//! Commands with real paho devices (3.1.1 and 5): round trips, timeouts,
//! polling, the outbox across reconnects and restarts, bad replies.

use std::time::Duration;

use serde_json::{Value, json};

use crate::device_peer::device;
use crate::mqtt_util::create_device;
use crate::util::{Api, Server, ServerBuilder, metric, tenant_with_owner, viewer_editor_owner};

/// Polls a command until it is in `state` (within 10 s).
async fn until_state(api: &Api, device: &str, id: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = api
            .get(&format!("/api/v1/devices/{device}/commands/{id}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json["state"] == state {
            return r.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "command {id} never reached {state}: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_command_round_trips_over_both_versions() {
    let server = Server::start().await;
    let admin = server.admin().await;
    for version in [5u8, 3] {
        let id = format!("robot-{version}");
        let token = create_device(&admin, &id).await;
        let mut dev = device(&server, &token, &id, version).await;
        let r = admin
            .post(
                &format!("/api/v1/devices/{id}/commands/echo"),
                json!({"speed": 3}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["state"], "succeeded");
        assert_eq!(r.json["response"], json!({"speed": 3}));
        assert!(r.json["delivered_at"].is_string() && r.json["finished_at"].is_string());
        let cmd = dev.expect("command", |_| true).await;
        assert_eq!(cmd["id"], r.json["id"]);
        assert_eq!(cmd["params"], json!({"speed": 3}));
        if version == 5 {
            // MQTT 5: the reply goes back by response topic and correlation data.
            assert_eq!(cmd["correlation"], r.json["id"]);
            assert_eq!(
                cmd["response_topic"],
                format!("devices/{id}/commands/echo/response")
            );
        }
        // A device's refusal is the command's failure, with its reason.
        let r = admin
            .post(&format!("/api/v1/devices/{id}/commands/fail"), json!(null))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            (r.json["state"].as_str(), r.json["error"].as_str()),
            (Some("failed"), Some("refused by device"))
        );
        // No reply: 504 at the timeout, and the command is expired.
        let started = tokio::time::Instant::now();
        let r = admin
            .post(
                &format!("/api/v1/devices/{id}/commands/ignore?timeout=0.5"),
                json!({}),
            )
            .await;
        r.assert_problem(504);
        assert!(started.elapsed() < Duration::from_secs(3));
        let list = admin
            .get(&format!("/api/v1/devices/{id}/commands?state=expired"))
            .await;
        assert_eq!(
            list.json["items"].as_array().unwrap().len(),
            1,
            "{}",
            list.text
        );
        // Asynchronous: 202 at once, then poll.
        let r = admin
            .post(
                &format!("/api/v1/devices/{id}/commands/echo?async=true"),
                json!([1, 2]),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let cid = r.json["id"].as_str().unwrap().to_owned();
        assert!(r.headers["location"].to_str().unwrap().ends_with(&cid));
        let done = until_state(&admin, &id, &cid, "succeeded").await;
        assert_eq!(done["response"], json!([1, 2]));
        let all = admin
            .get(&format!("/api/v1/devices/{id}/commands?limit=2"))
            .await;
        assert_eq!(all.json["items"][0]["id"], cid.as_str(), "newest first");
        assert!(all.json["next_cursor"].is_string());
        dev.quit().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_outbox_delivers_in_order_on_reconnect_and_expires_after_its_ttl() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "lamp").await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let r = admin
            .post(
                "/api/v1/devices/lamp/commands/echo?async=true",
                json!({"n": n}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json["state"], "pending");
        ids.push(r.json["id"].as_str().unwrap().to_owned());
    }
    let r = admin
        .post(
            "/api/v1/devices/lamp/commands/echo?async=true&ttl=1",
            json!({"n": "late"}),
        )
        .await;
    let short = r.json["id"].as_str().unwrap().to_owned();
    let expired = until_state(&admin, "lamp", &short, "expired").await;
    assert!(expired["delivered_at"].is_null());
    let mut dev = device(&server, &token, "lamp", 3).await;
    for n in 1..=3 {
        let cmd = dev.expect("command", |_| true).await;
        assert_eq!(
            cmd["params"],
            json!({"n": n}),
            "in the order they were sent"
        );
    }
    for id in &ids {
        until_state(&admin, "lamp", id, "succeeded").await;
    }
    dev.expect_none("command", Duration::from_millis(300)).await;
    dev.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn an_accepted_command_survives_a_restart() {
    let server = ServerBuilder::new().start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "gate").await;
    let r = admin
        .post(
            "/api/v1/devices/gate/commands/echo?async=true",
            json!({"open": 1}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let (_dir, data) = server.stop_keep_dir().await;
    let server = ServerBuilder::new().data_dir(data).start().await;
    let admin = server.admin().await;
    assert_eq!(
        until_state(&admin, "gate", &id, "pending").await["params"],
        json!({"open": 1})
    );
    let mut dev = device(&server, &token, "gate", 5).await;
    assert_eq!(dev.expect("command", |_| true).await["id"], id.as_str());
    until_state(&admin, "gate", &id, "succeeded").await;
    dev.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn bad_commands_and_bad_replies() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "d1").await;
    let other_token = create_device(&admin, "d2").await;

    // Unknown device and another tenant's device: the same 404.
    let them = tenant_with_owner(&server, &admin, "them").await;
    create_device(&them, "theirs").await;
    let a = admin
        .post("/api/v1/devices/theirs/commands/echo", json!({}))
        .await;
    let b = admin
        .post("/api/v1/devices/nope/commands/echo", json!({}))
        .await;
    a.assert_problem(404);
    assert_eq!(a.text, b.text);
    // Parameters over the limit, bad names, bad timeouts, roles.
    let big = json!({"blob": "x".repeat(70 * 1024)});
    admin
        .post("/api/v1/devices/d1/commands/echo", big)
        .await
        .assert_problem(413);
    admin
        .post("/api/v1/devices/d1/commands/a%2Bb", json!({}))
        .await
        .assert_problem(400);
    admin
        .post("/api/v1/devices/d1/commands/echo?timeout=0", json!({}))
        .await
        .assert_problem(400);
    admin
        .post("/api/v1/devices/d1/commands/echo?timeout=301", json!({}))
        .await
        .assert_problem(400);
    let [viewer, _, _] = viewer_editor_owner(&server, &admin).await;
    viewer
        .post("/api/v1/devices/d1/commands/echo", json!({}))
        .await
        .assert_problem(403);
    assert_eq!(viewer.get("/api/v1/devices/d1/commands").await.status, 200);
    admin
        .get("/api/v1/devices/d1/commands/0123")
        .await
        .assert_problem(404);

    // A malformed reply (MQTT 5: the correlation data names the command)
    // fails the command and is counted.
    let d1 = device(&server, &token, "d1", 5).await;
    let r = admin
        .post("/api/v1/devices/d1/commands/malformed", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["state"], "failed");
    assert!(
        r.json["error"].as_str().unwrap().contains("not valid JSON"),
        "{}",
        r.text
    );

    // d2 answers d1's command on its own topic: ignored and counted.
    let d2 = device(&server, &other_token, "d2", 3).await;
    let r = admin
        .post(
            "/api/v1/devices/d1/commands/ignore?async=true&ttl=60",
            json!({}),
        )
        .await;
    let victim = r.json["id"].as_str().unwrap().to_owned();
    until_state(&admin, "d1", &victim, "delivered").await;
    let r = admin
        .post(
            "/api/v1/devices/d2/commands/steal?timeout=1",
            json!({"id": victim}),
        )
        .await;
    r.assert_problem(504);
    assert_eq!(
        until_state(&admin, "d1", &victim, "delivered").await["response"],
        Value::Null
    );
    let metrics = server.anon().get("/metrics").await.text;
    assert!(
        metric(
            &metrics,
            "ferrule_command_replies_invalid_total{reason=\"wrong_device\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "ferrule_command_replies_invalid_total{reason=\"malformed\"}"
        ) >= 1.0,
        "{metrics}"
    );
    d1.quit().await;
    d2.quit().await;
    server.stop().await;
}

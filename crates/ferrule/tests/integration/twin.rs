//! Device twins with real paho devices (3.1.1 and 5): reported state in,
//! desired state and delta out (retained), versions, history, bounds.

use serde_json::{Value, json};

use crate::device_peer::{DevicePeer, device};
use crate::mqtt_util::create_device;
use crate::util::{Api, Server, ServerBuilder, tenant_with_owner, viewer_editor_owner};

/// The next state message on `devices/{id}/state/{which}`.
async fn state_message(peer: &mut DevicePeer, id: &str, which: &str) -> Value {
    let topic = format!("devices/{id}/state/{which}");
    peer.expect("message", |m| m["topic"] == topic.as_str())
        .await
}

async fn twin(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/api/v1/devices/{id}/state")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

#[tokio::test]
async fn reported_desired_and_delta_round_trip_over_both_versions() {
    let server = Server::start().await;
    let admin = server.admin().await;
    for version in [5u8, 3] {
        let id = format!("pump-{version}");
        let token = create_device(&admin, &id).await;
        let mut dev = device(&server, &token, &id, version).await;
        let path = format!("/api/v1/devices/{id}/state");

        // Reported state merges in; the PUBACK means it is stored.
        let rc = dev
            .report(&json!({"temp": 20, "cfg": {"mode": "eco", "rate": 1}, "list": [1, 2]}))
            .await;
        assert_eq!(rc, 0);
        let t = twin(&admin, &id).await;
        assert_eq!(
            t["reported"],
            json!({"temp": 20, "cfg": {"mode": "eco", "rate": 1}, "list": [1, 2]})
        );
        assert_eq!(
            (t["version"].as_u64(), t["reported_version"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(t["metadata"]["reported"]["cfg"]["mode"].is_i64(), "{t}");
        assert_eq!(t["delta"], json!({}));

        // Desired: nested change, an equal array, a new key.
        let r = admin
            .patch(
                &path,
                json!({"desired": {"cfg": {"mode": "boost"}, "list": [1, 2], "fw": "2.0"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.json["delta"],
            json!({"cfg": {"mode": "boost"}, "fw": "2.0"})
        );
        assert_eq!(r.headers["etag"], "\"1\"");
        let desired = state_message(&mut dev, &id, "desired").await;
        assert_eq!(
            desired["payload"],
            json!({"cfg": {"mode": "boost"}, "list": [1, 2], "fw": "2.0"})
        );
        let delta = state_message(&mut dev, &id, "delta").await;
        assert_eq!(
            delta["payload"],
            json!({"cfg": {"mode": "boost"}, "fw": "2.0"})
        );

        // The device does what it was told: the delta empties.
        assert_eq!(
            dev.report(&json!({"cfg": {"mode": "boost"}, "fw": "2.0"}))
                .await,
            0
        );
        let delta = state_message(&mut dev, &id, "delta").await;
        assert_eq!(delta["payload"], json!({}));
        assert_eq!(twin(&admin, &id).await["delta"], json!({}));

        // null deletes; a type change replaces; the patch alone works too.
        let r = admin.patch(&path, json!({"fw": null, "cfg": 5})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["desired"], json!({"cfg": 5, "list": [1, 2]}));
        assert_eq!(r.json["delta"], json!({"cfg": 5}));
        let delta = state_message(&mut dev, &id, "delta").await;
        assert_eq!(delta["payload"], json!({"cfg": 5}));
        // Reported deletes too.
        assert_eq!(dev.report(&json!({"temp": null})).await, 0);
        assert!(twin(&admin, &id).await["reported"].get("temp").is_none());

        // History: every change, who made it, oldest first, paged.
        let h = admin.get(&format!("{path}/history?limit=2")).await;
        assert_eq!(h.status, 200, "{}", h.text);
        let items = h.json["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["section"], "reported");
        assert_eq!(items[0]["actor"], format!("device:{id}"));
        assert_eq!(items[1]["section"], "desired");
        assert!(items[1]["actor"].as_str().unwrap().starts_with("user:"));
        let cursor = h.json["next_cursor"].as_str().unwrap();
        let rest = admin
            .get(&format!("{path}/history?limit=100&cursor={cursor}"))
            .await;
        assert_eq!(
            rest.json["items"].as_array().unwrap().len(),
            3,
            "{}",
            rest.text
        );
        let desired_only = admin.get(&format!("{path}/history?section=desired")).await;
        assert_eq!(desired_only.json["items"].as_array().unwrap().len(), 2);
        let none = admin.get(&format!("{path}/history?from=1&to=2")).await;
        assert_eq!(none.json["items"], json!([]));
        dev.quit().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_device_gets_desired_state_retained_when_it_connects_even_after_a_restart() {
    let server = ServerBuilder::new().start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "valve").await;
    let r = admin
        .patch("/api/v1/devices/valve/state", json!({"open": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_dir, data) = server.stop_keep_dir().await;
    let server = ServerBuilder::new().data_dir(data).start().await;
    let mut dev = device(&server, &token, "valve", 3).await;
    let desired = state_message(&mut dev, "valve", "desired").await;
    assert_eq!(
        (desired["payload"].clone(), desired["retain"].clone()),
        (json!({"open": true}), json!(true))
    );
    let delta = state_message(&mut dev, "valve", "delta").await;
    assert_eq!(delta["payload"], json!({"open": true}));
    // The twin itself survived too.
    let admin = server.admin().await;
    assert_eq!(twin(&admin, "valve").await["desired_version"], 1);
    dev.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn if_match_refuses_a_change_based_on_an_old_version() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_device(&admin, "d").await;
    let path = "/api/v1/devices/d/state";
    let etag = admin.get(path).await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(etag, "\"0\"");
    let first = admin
        .clone()
        .with_header("If-Match", &etag)
        .patch(path, json!({"a": 1}))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let stale = admin
        .clone()
        .with_header("If-Match", &etag)
        .patch(path, json!({"a": 2}))
        .await;
    stale.assert_problem(412);
    assert_eq!(twin(&admin, "d").await["desired"], json!({"a": 1}));
    // Two writers racing on the same version: exactly one wins.
    let current = "\"1\"";
    let a = admin.clone().with_header("If-Match", current);
    let b = admin.clone().with_header("If-Match", current);
    let (ra, rb) = tokio::join!(
        a.patch(path, json!({"w": "a"})),
        b.patch(path, json!({"w": "b"}))
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
    admin
        .clone()
        .with_header("If-Match", "nonsense")
        .patch(path, json!({"a": 1}))
        .await
        .assert_problem(400);
    // Deleting the device deletes its twin: created anew, it starts empty.
    assert_eq!(admin.delete("/api/v1/devices/d").await.status, 204);
    admin.get(path).await.assert_problem(404);
    create_device(&admin, "d").await;
    let fresh = twin(&admin, "d").await;
    assert_eq!(
        (fresh["desired"].clone(), fresh["version"].clone()),
        (json!({}), json!(0))
    );
    let h = admin.get(&format!("{path}/history")).await;
    assert_eq!(h.json["items"], json!([]), "{}", h.text);
    server.stop().await;
}

#[tokio::test]
async fn twin_bounds_roles_and_tenancy() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "d").await;
    let path = "/api/v1/devices/d/state";

    let big = "x".repeat(70 * 1024);
    admin
        .patch(path, json!({"blob": big}))
        .await
        .assert_problem(413);
    let mut deep = json!(1);
    for _ in 0..12 {
        deep = json!({ "k": deep });
    }
    admin.patch(path, deep).await.assert_problem(400);
    admin.patch(path, json!([1, 2])).await.assert_problem(400);

    let [viewer, editor, _] = viewer_editor_owner(&server, &admin).await;
    assert_eq!(viewer.get(path).await.status, 200);
    viewer
        .patch(path, json!({"a": 1}))
        .await
        .assert_problem(403);
    assert_eq!(editor.patch(path, json!({"a": 1})).await.status, 200);

    // Another tenant's device answers exactly like a device that does not exist.
    let other = tenant_with_owner(&server, &admin, "other").await;
    create_device(&other, "theirs").await;
    let theirs = admin.get("/api/v1/devices/theirs/state").await;
    let missing = admin.get("/api/v1/devices/nope/state").await;
    theirs.assert_problem(404);
    assert_eq!(theirs.text, missing.text);
    admin
        .patch("/api/v1/devices/theirs/state", json!({"a": 1}))
        .await
        .assert_problem(404);
    admin
        .get("/api/v1/devices/theirs/state/history")
        .await
        .assert_problem(404);

    // HTTP ingest of reported state, with the device's token.
    let as_device = server.api(&token);
    let r = as_device
        .raw(
            reqwest::Method::POST,
            "/api/v1/ingest/state/reported",
            Some((br#"{"rssi": -60}"#, "application/json")),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(twin(&admin, "d").await["reported"], json!({"rssi": -60}));
    as_device
        .raw(
            reqwest::Method::POST,
            "/api/v1/ingest/state/reported",
            Some((b"[1]", "application/json")),
        )
        .await
        .assert_problem(400);
    let body = format!("{{\"blob\": \"{big}\"}}");
    as_device
        .raw(
            reqwest::Method::POST,
            "/api/v1/ingest/state/reported",
            Some((body.as_bytes(), "application/json")),
        )
        .await
        .assert_problem(413);

    // Over MQTT 5: bad reported state is refused with 0x99, and the topics
    // Ferrule writes are not the device's (0x87).
    let mut dev = device(&server, &token, "d", 5).await;
    assert_eq!(dev.publish("state/reported", "not json").await, 0x99);
    assert_eq!(dev.publish("state/reported", "[1,2]").await, 0x99);
    assert_eq!(dev.publish("state/desired", r#"{"a": 99}"#).await, 0x87);
    assert_eq!(dev.publish("state/delta", "{}").await, 0x87);
    assert_eq!(twin(&admin, "d").await["desired"], json!({"a": 1}));
    let metrics = server.anon().get("/metrics").await.text;
    for reason in ["too_large", "shape", "not_json", "written_by_ferrule"] {
        assert!(
            metrics.contains(&format!(
                "ferrule_twin_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
    dev.quit().await;
    server.stop().await;
}

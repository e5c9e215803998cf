//! Device profiles (issue 10): CRUD and roles, schemas checked on the
//! router's intake for MQTT and HTTP alike, device attributes and the
//! device list's label and profile filters.

use reqwest::Method;
use serde_json::{Value, json};

use crate::util::{Api, Server, python_peer, tenant_with_owner, viewer_editor_owner};

fn pump_profile() -> Value {
    json!({
        "name": "pumps",
        "description": "Water pumps",
        "telemetry_schema": {
            "type": "object",
            "properties": {"temp": {"type": "number", "maximum": 100}},
        },
        "state_schema": {
            "type": "object",
            "properties": {"mode": {"enum": ["on", "off", null]}},
        },
        "retention_days": 30,
        "defaults": {"max_temp": 100},
    })
}

/// Creates device `id` in `profile`; returns its access token.
async fn device(api: &Api, id: &str, profile: &str, attributes: Value) -> String {
    let r = api
        .post(
            "/api/v1/devices",
            json!({"id": id, "profile": profile, "attributes": attributes}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["token"].as_str().unwrap().to_owned()
}

/// The value of the first `/metrics` series of `name` whose labels contain
/// every one of `labels`.
async fn metric_with(s: &Server, name: &str, labels: &[&str]) -> f64 {
    let text = s.anon().get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit_once(' '))
        .map_or(0.0, |(_, v)| v.parse().unwrap())
}

#[tokio::test]
async fn profiles_are_kept_per_tenant_and_written_by_editors_and_owners() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let [viewer, editor, owner] = viewer_editor_owner(&s, &admin).await;

    // `default` exists before anyone saves it, empty.
    let r = viewer.get("/api/v1/device-profiles/default").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["telemetry_schema"], Value::Null);
    assert_eq!(r.json["defaults"], json!({}));

    viewer
        .post("/api/v1/device-profiles", pump_profile())
        .await
        .assert_problem(403);
    let r = editor.post("/api/v1/device-profiles", pump_profile()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["retention_days"], 30);
    editor
        .post("/api/v1/device-profiles", pump_profile())
        .await
        .assert_problem(409);
    // A name that would shadow the console's form page.
    let r = editor
        .post("/api/v1/device-profiles", json!({"name": "new"}))
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "name", "{}", r.text);

    let r = viewer.get("/api/v1/device-profiles").await;
    let names: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "pumps"]);
    let r = viewer.get("/api/v1/device-profiles?limit=1").await;
    assert_eq!(r.json["items"][0]["name"], "default");
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = viewer
        .get(&format!("/api/v1/device-profiles?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(r.json["items"][0]["name"], "pumps");
    assert_eq!(r.json["next_cursor"], Value::Null);

    // PUT replaces: what is left out is cleared.
    viewer
        .send(
            Method::PUT,
            "/api/v1/device-profiles/pumps",
            Some(json!({})),
        )
        .await
        .assert_problem(403);
    let r = owner
        .send(
            Method::PUT,
            "/api/v1/device-profiles/pumps",
            Some(json!({"description": "Pumps v2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["description"], "Pumps v2");
    assert_eq!(r.json["telemetry_schema"], Value::Null);
    owner
        .send(Method::PUT, "/api/v1/device-profiles/nope", Some(json!({})))
        .await
        .assert_problem(404);

    // A schema that does not compile says where and why; nothing is saved.
    let r = editor
        .post(
            "/api/v1/device-profiles",
            json!({"name": "broken", "telemetry_schema": {"type": "nope"}}),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "telemetry_schema");
    assert!(
        r.json["detail"].as_str().unwrap().contains("/type"),
        "{}",
        r.text
    );
    viewer
        .get("/api/v1/device-profiles/broken")
        .await
        .assert_problem(404);
    // Bounds: schemas 64 KiB, defaults 16 KiB.
    let big = "x".repeat(65 * 1024);
    let r = editor
        .post(
            "/api/v1/device-profiles",
            json!({"name": "big", "state_schema": {"description": big}}),
        )
        .await;
    r.assert_problem(413);
    assert_eq!(r.json["field"], "state_schema");
    editor
        .post(
            "/api/v1/device-profiles",
            json!({"name": "big", "defaults": {"x": "y".repeat(17 * 1024)}}),
        )
        .await
        .assert_problem(413);
    editor
        .post("/api/v1/device-profiles", json!({"name": "bad name!"}))
        .await
        .assert_problem(400);

    // Devices name profiles that exist; one in use cannot be deleted.
    let r = editor
        .post("/api/v1/devices", json!({"id": "d1", "profile": "ghost"}))
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "profile");
    device(&editor, "d1", "pumps", json!({})).await;
    let r = editor
        .patch("/api/v1/devices/d1", json!({"profile": "ghost"}))
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "profile");
    viewer
        .delete("/api/v1/device-profiles/pumps")
        .await
        .assert_problem(403);
    editor
        .delete("/api/v1/device-profiles/pumps")
        .await
        .assert_problem(409);
    let r = editor
        .patch("/api/v1/devices/d1", json!({"profile": "default"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = editor.delete("/api/v1/device-profiles/pumps").await;
    assert_eq!(r.status, 204, "{}", r.text);
    editor
        .delete("/api/v1/device-profiles/pumps")
        .await
        .assert_problem(404);

    // Another tenant's profile is not found, exactly as a missing one.
    let other = tenant_with_owner(&s, &admin, "other").await;
    let r = other.post("/api/v1/device-profiles", pump_profile()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    for api in [&viewer, &editor, &owner] {
        api.get("/api/v1/device-profiles/pumps")
            .await
            .assert_problem(404);
    }
    owner
        .send(
            Method::PUT,
            "/api/v1/device-profiles/pumps",
            Some(json!({})),
        )
        .await
        .assert_problem(404);
    owner
        .delete("/api/v1/device-profiles/pumps")
        .await
        .assert_problem(404);
    assert_eq!(
        other.get("/api/v1/device-profiles/pumps").await.json["description"],
        "Water pumps"
    );
    s.stop().await;
}

#[tokio::test]
async fn telemetry_and_state_that_break_the_profile_are_refused_over_mqtt_and_http() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin.post("/api/v1/device-profiles", pump_profile()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = device(&admin, "pump", "pumps", json!({})).await;
    let loose = device(&admin, "loose", "default", json!({})).await;

    // A real MQTT 5 device: 0x99 with the path and rule, then a valid one.
    let (host, port) = s.mqtt.rsplit_once(':').unwrap();
    python_peer(
        "profiles.py",
        "schema_refused",
        &[
            ("MQTT_HOST", host.to_owned()),
            ("MQTT_PORT", port.to_owned()),
            ("DEV_USER", token.clone()),
            ("DEV_PASS", String::new()),
        ],
    )
    .await;

    // HTTP ingest: 400 naming the path; a timestamped array's element too.
    let dev = s.api(&token);
    let r = dev
        .post("/api/v1/ingest/telemetry", json!({"temp": "hot"}))
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["detail"], "/temp: \"hot\" is not of type \"number\"");
    let r = dev
        .post(
            "/api/v1/ingest/telemetry",
            json!([{"temp": 1}, {"ts": 1_700_000_000_000_i64, "values": {"temp": 101}}]),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(
        r.json["detail"],
        "/1/values/temp: 101 is greater than the maximum of 100"
    );
    // Reported state is checked as sent.
    let r = dev
        .post("/api/v1/ingest/state/reported", json!({"mode": "turbo"}))
        .await;
    r.assert_problem(400);
    assert!(
        r.json["detail"].as_str().unwrap().starts_with("/mode: "),
        "{}",
        r.text
    );
    // A device in a profile without schemas sends what it likes.
    let r = s
        .api(&loose)
        .post("/api/v1/ingest/telemetry", json!({"temp": 1000}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);

    // Only the valid reading was stored.
    let r = admin
        .get("/api/v1/devices/pump/telemetry?keys=temp&from=0")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let values: Vec<&Value> = r.json["temp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["value"])
        .collect();
    assert_eq!(values, [&json!(42)], "{}", r.text);

    let refusals = |kind: &'static str| {
        let s = &s;
        async move {
            metric_with(
                s,
                "ferrule_profile_schema_refusals_total",
                &[
                    "tenant=\"default\"",
                    "profile=\"pumps\"",
                    &format!("kind=\"{kind}\""),
                ],
            )
            .await
        }
    };
    assert_eq!(refusals("telemetry").await, 3.0);
    assert_eq!(refusals("state").await, 1.0);

    // A new schema applies to the next message.
    let r = admin
        .send(
            Method::PUT,
            "/api/v1/device-profiles/pumps",
            Some(json!({"telemetry_schema": {"properties": {"temp": {"type": "string"}}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = dev
        .post("/api/v1/ingest/telemetry", json!({"temp": "hot"}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.stop().await;
}

#[tokio::test]
async fn the_profile_guard_knows_devices_and_profiles_after_a_restart() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin.post("/api/v1/device-profiles", pump_profile()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = device(&admin, "pump", "pumps", json!({})).await;
    let (dir, data_dir) = s.stop_keep_dir().await;
    let s = crate::util::ServerBuilder::new()
        .data_dir(data_dir)
        .start()
        .await;
    let r = s
        .api(&token)
        .post("/api/v1/ingest/telemetry", json!({"temp": 500}))
        .await;
    r.assert_problem(400);
    assert_eq!(
        r.json["detail"],
        "/temp: 500 is greater than the maximum of 100"
    );
    s.stop().await;
    drop(dir);
}

#[tokio::test]
async fn devices_are_listed_by_label_and_profile_page_by_page() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin
        .post("/api/v1/device-profiles", json!({"name": "meters"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Ten devices; the even ones are in the north, every third is an edge
    // device, the last four are meters.
    for i in 0..10 {
        let mut labels = serde_json::Map::new();
        labels.insert(
            "site".into(),
            json!(if i % 2 == 0 { "north" } else { "south" }),
        );
        if i % 3 == 0 {
            labels.insert("edge".into(), json!("yes"));
        }
        let profile = if i >= 6 { "meters" } else { "default" };
        device(
            &admin,
            &format!("d{i}"),
            profile,
            json!({"labels": labels, "customer": "acme"}),
        )
        .await;
    }
    // Interlopers that must never match: a label as a non-object, and a
    // key that only looks like `site`.
    device(&admin, "x1", "default", json!({"site": "north"})).await;

    let walk = |query: &'static str| {
        let admin = admin.clone();
        async move {
            let mut ids = Vec::new();
            let mut pages = 0;
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/api/v1/devices?{query}&limit=2&cursor={c}"),
                    None => format!("/api/v1/devices?{query}&limit=2"),
                };
                let r = admin.get(&path).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let items = r.json["items"].as_array().unwrap();
                pages += 1;
                if r.json["next_cursor"].is_string() {
                    assert_eq!(items.len(), 2, "a page before the last is full");
                }
                ids.extend(items.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
                match r.json["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
                assert!(pages < 20, "paging does not end");
            }
            ids
        }
    };
    assert_eq!(
        walk("label=site%3Dnorth").await,
        ["d0", "d2", "d4", "d6", "d8"]
    );
    assert_eq!(walk("label=edge").await, ["d0", "d3", "d6", "d9"]);
    assert_eq!(walk("label=site%3Dnorth&label=edge").await, ["d0", "d6"]);
    assert_eq!(walk("profile=meters").await, ["d6", "d7", "d8", "d9"]);
    assert_eq!(
        walk("profile=meters&label=site%3Dsouth").await,
        ["d7", "d9"]
    );
    assert!(walk("label=site%3Deast").await.is_empty());
    // A key no label can have matches nothing; more than 16 filters is 400.
    assert!(walk("label=%3Dx").await.is_empty());
    let many = vec!["label=a"; 17].join("&");
    admin
        .get(&format!("/api/v1/devices?{many}"))
        .await
        .assert_problem(400);
    s.stop().await;
}

#[tokio::test]
async fn device_attributes_are_bounded_and_patched_as_a_merge_patch() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let [viewer, editor, _] = viewer_editor_owner(&s, &admin).await;
    device(
        &editor,
        "pump",
        "default",
        json!({"labels": {"site": "north"}, "location": {"lat": 52.5, "lon": 13.4}}),
    )
    .await;

    for (attributes, field) in [
        (json!({"labels": {"site": 5}}), "attributes.labels.site"),
        (json!({"labels": "north"}), "attributes.labels"),
        (
            json!({"location": {"lat": "52"}}),
            "attributes.location.lat",
        ),
        (
            json!({"location": {"lat": 1, "lon": 200}}),
            "attributes.location.lon",
        ),
        (json!({"customer": ["a"]}), "attributes.customer"),
        (
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}),
            "attributes",
        ),
    ] {
        let r = editor
            .patch("/api/v1/devices/pump", json!({"attributes": attributes}))
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{attributes}");
    }
    let r = editor
        .patch(
            "/api/v1/devices/pump",
            json!({"attributes": {"notes": "x".repeat(17 * 1024)}}),
        )
        .await;
    r.assert_problem(413);
    let r = editor
        .post(
            "/api/v1/devices",
            json!({"id": "big", "attributes": {"notes": "x".repeat(17 * 1024)}}),
        )
        .await;
    r.assert_problem(413);

    // A merge patch: set, replace within labels, delete with null.
    viewer
        .patch(
            "/api/v1/devices/pump/attributes",
            json!({"customer": "acme"}),
        )
        .await
        .assert_problem(403);
    let r = editor
        .patch(
            "/api/v1/devices/pump/attributes",
            json!({"customer": "acme", "labels": {"rack": "7"}, "location": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["attributes"],
        json!({"customer": "acme", "labels": {"site": "north", "rack": "7"}})
    );
    let r = editor
        .patch(
            "/api/v1/devices/pump/attributes",
            json!({"labels": {"rack": 7}}),
        )
        .await;
    r.assert_problem(400);
    editor
        .patch("/api/v1/devices/nope/attributes", json!({}))
        .await
        .assert_problem(404);
    s.stop().await;
}

//! Dashboards through the API: saved with versions, checked field by
//! field, exported and imported across tenants, shared read-only by a link
//! that shows its widgets' data and nothing else, revoked, replaced.

use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_util::create_device;
use crate::util::{Api, Resp, Server, tenant_with_owner, viewer_editor_owner};

async fn put(api: &Api, path: &str, body: Value) -> Resp {
    api.send(Method::PUT, path, Some(body)).await
}

fn layout() -> Value {
    json!([
        {"id": "temp", "type": "line_chart", "title": "Temperature", "x": 0, "y": 0, "w": 8, "h": 4,
         "device": "pump", "keys": ["temp"], "range_ms": 3600000},
        {"id": "now", "type": "latest_value", "x": 8, "y": 0, "w": 4, "h": 2,
         "device": "pump", "keys": ["temp", "rpm"]},
        {"id": "reboot", "type": "command_button", "x": 8, "y": 2, "w": 4, "h": 1,
         "device": "pump", "options": {"command": "reboot"}},
        {"id": "alarms", "type": "alarm_list", "x": 0, "y": 4, "w": 12, "h": 3}
    ])
}

async fn ingest(server: &Server, token: &str, body: &str) {
    let r = server
        .api(token)
        .raw(
            Method::POST,
            "/api/v1/ingest/telemetry",
            Some((body.as_bytes(), "application/json")),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
}

#[tokio::test]
async fn dashboards_are_saved_shared_revoked_exported_and_imported() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let pump = create_device(&admin, "pump").await;
    let fan = create_device(&admin, "fan").await;
    let [viewer, editor, _owner] = viewer_editor_owner(&server, &admin).await;

    // Create, read, list; viewers read but do not write.
    let r = editor
        .post(
            "/api/v1/dashboards",
            json!({"id": "plant", "name": "Plant", "widgets": layout()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["shared"], false);
    assert_eq!(r.headers["etag"], "\"1\"");
    assert_eq!(r.json["widgets"], layout());
    let r = viewer.get("/api/v1/dashboards/plant").await;
    assert_eq!((r.status, r.json["name"].clone()), (200, json!("Plant")));
    let r = viewer.get("/api/v1/dashboards").await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1);
    viewer
        .post("/api/v1/dashboards", json!({"name": "Mine"}))
        .await
        .assert_problem(403);
    // An id that would shadow a fixed path, where it could not be opened.
    for id in ["import", "new"] {
        let r = editor
            .post("/api/v1/dashboards", json!({"id": id, "name": "X"}))
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], "id", "{}", r.text);
    }
    viewer
        .post("/api/v1/dashboards/plant/share", json!({}))
        .await
        .assert_problem(403);
    editor
        .post(
            "/api/v1/dashboards",
            json!({"id": "plant", "name": "Again"}),
        )
        .await
        .assert_problem(409);

    // Bad layouts name the field at fault; nothing is saved.
    let mut overlapping = layout();
    overlapping[1]["x"] = json!(10);
    let r = editor
        .post(
            "/api/v1/dashboards",
            json!({"name": "Bad", "widgets": overlapping}),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "widgets[1].w", "{}", r.text);
    let r = editor
        .post(
            "/api/v1/dashboards",
            json!({"name": "Bad", "widgets": [{"id": "g", "type": "gauge", "x": 0, "y": 0, "w": 2, "h": 2, "device": "pump"}]}),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "widgets[0].keys");
    editor
        .post("/api/v1/dashboards", json!({"name": ""}))
        .await
        .assert_problem(400);
    editor
        .post("/api/v1/dashboards", json!({"name": "x", "colour": "red"}))
        .await
        .assert_problem(400);
    assert_eq!(
        viewer.get("/api/v1/dashboards").await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Replace with If-Match: a stale version is 412 and changes nothing.
    let mut moved = layout();
    moved[0]["w"] = json!(6);
    let r = put(
        &editor.clone().with_header("If-Match", "\"1\""),
        "/api/v1/dashboards/plant",
        json!({"name": "Plant floor", "widgets": moved}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["version"], 2);
    put(
        &editor.clone().with_header("If-Match", "\"1\""),
        "/api/v1/dashboards/plant",
        json!({"name": "Stale"}),
    )
    .await
    .assert_problem(412);
    assert_eq!(
        viewer.get("/api/v1/dashboards/plant").await.json["name"],
        "Plant floor"
    );

    // Data for the link: the pump's values, the fan's (not on the board),
    // an alarm of the pump.
    ingest(&server, &pump, r#"{"temp": 21.5, "rpm": 900, "secret": 7}"#).await;
    ingest(&server, &fan, r#"{"temp": 99}"#).await;
    let r = editor
        .post(
            "/api/v1/alarms",
            json!({"device": "pump", "type": "overheat"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Share: the token opens it logged out, with its widgets' data only.
    let r = editor
        .post("/api/v1/dashboards/plant/share", json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_owned();
    let path = r.json["path"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fv_") && path.ends_with(&token));
    let anon = server.anon();
    let r = anon.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "Plant floor");
    let now = &r.json["data"]["now"]["latest"];
    assert_eq!(now["temp"]["value"], 21.5, "{}", r.text);
    assert_eq!(now["rpm"]["value"], 900);
    assert!(
        now.get("secret").is_none(),
        "keys off the board stay hidden"
    );
    let history = &r.json["data"]["temp"]["history"]["temp"];
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{}", r.text);
    assert_eq!(history[0]["value"], 21.5);
    let alarms = r.json["data"]["alarms"]["alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{}", r.text);
    assert_eq!(alarms[0]["type"], "overheat");
    assert!(
        !r.text.contains("\"fan\""),
        "the fan is not on the board: {}",
        r.text
    );
    // The link reads; it does not act, nor open the rest of the API.
    assert!(r.json["data"]["reboot"].as_object().unwrap().is_empty());
    server
        .api(&token)
        .get("/api/v1/devices")
        .await
        .assert_problem(401);
    assert_eq!(
        viewer.get("/api/v1/dashboards/plant").await.json["shared"],
        true
    );

    // A new link replaces the old; revoking ends it; a guess finds nothing.
    let r = editor
        .post("/api/v1/dashboards/plant/share", json!({}))
        .await;
    let second = r.json["path"].as_str().unwrap().to_owned();
    anon.get(&path).await.assert_problem(404);
    assert_eq!(anon.get(&second).await.status, 200);
    let r = editor.delete("/api/v1/dashboards/plant/share").await;
    assert_eq!(r.status, 204, "{}", r.text);
    anon.get(&second).await.assert_problem(404);
    anon.get("/api/v1/shared/dashboards/fv_guess")
        .await
        .assert_problem(404);

    // Export, and import into another tenant, which cannot see the original.
    let r = viewer.get("/api/v1/dashboards/plant/export").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["format"], "ferrule.dashboard/1");
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("dashboard-plant.json")
    );
    let exported = r.json.clone();
    let other = tenant_with_owner(&server, &admin, "acme").await;
    other
        .get("/api/v1/dashboards/plant")
        .await
        .assert_problem(404);
    other
        .post("/api/v1/dashboards/plant/share", json!({}))
        .await
        .assert_problem(404);
    let r = other
        .post("/api/v1/dashboards/import?id=copy", exported.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["id"], "copy");
    assert_eq!(r.json["name"], "Plant floor");
    assert_eq!(r.json["widgets"], exported["widgets"]);
    assert_eq!(r.json["version"], 1);
    let mut wrong = exported.clone();
    wrong["format"] = json!("grafana");
    let r = other.post("/api/v1/dashboards/import", wrong).await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "format");

    // Deleting a shared dashboard ends its link too.
    let r = editor
        .post("/api/v1/dashboards/plant/share", json!({}))
        .await;
    let third = r.json["path"].as_str().unwrap().to_owned();
    assert_eq!(editor.delete("/api/v1/dashboards/plant").await.status, 204);
    anon.get(&third).await.assert_problem(404);
    editor
        .delete("/api/v1/dashboards/plant")
        .await
        .assert_problem(404);
}

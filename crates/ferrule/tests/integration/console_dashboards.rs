//! The console's dashboards pages over HTTP: list, create, add and remove
//! widgets (errors next to their field, versions kept), the widgets' data,
//! the layout saved by the script (CSRF header, If-Match), command buttons,
//! share links and the public `/share/{token}` page (404 once revoked),
//! export and import; viewers read only; forged posts refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{Browser, Page};
use crate::mqtt_util::create_device;
use crate::util::{Server, USER_PASSWORD, viewer_editor_owner};

/// The layout as `dashboards.js` saves it: JSON, the CSRF token in a header.
async fn save_layout(
    s: &Server,
    b: &Browser,
    id: &str,
    csrf: Option<&str>,
    layout: Value,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/dashboards/{id}/layout", s.http))
        .header(
            "cookie",
            format!("ferrule_session={}", b.session().unwrap()),
        )
        .header("origin", s.http.clone())
        .header("content-type", "application/json")
        .body(layout.to_string());
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn add_widget(b: &mut Browser, id: &str, fields: &[(&str, &str)]) -> Page {
    b.post(&format!("/dashboards/{id}/widgets"), fields).await
}

#[tokio::test]
async fn dashboards_are_created_and_widgets_added_removed_and_laid_out() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let token = create_device(&admin, "boiler").await;
    let mut b = Browser::admin(&s).await;
    let list = b.get("/dashboards").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("No dashboards yet"));
    let csrf = list.csrf();

    let r = b
        .post("/dashboards", &[("name", " "), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"dashboard-name-error\""), "{}", r.body);
    let r = b
        .post(
            "/dashboards",
            &[("name", "Plant"), ("id", "plant"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/dashboards/plant?edit=1");
    let dup = b
        .post(
            "/dashboards",
            &[("name", "Again"), ("id", "plant"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(
        dup.body.contains("id=\"dashboard-id-error\""),
        "{}",
        dup.body
    );

    let page = b.get("/dashboards/plant?edit=1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Add a widget"), "{}", page.body);
    assert!(page.body.contains("data-version"));

    // A chart without keys: the keys' error, what was typed kept.
    let r = add_widget(
        &mut b,
        "plant",
        &[
            ("type", "line_chart"),
            ("device", "boiler"),
            ("keys", ""),
            ("title", "Heat"),
            ("version", "1"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"widget-keys-error\""), "{}", r.body);
    assert!(r.body.contains("value=\"Heat\""));
    let r = add_widget(
        &mut b,
        "plant",
        &[
            ("type", "gauge"),
            ("device", "boiler"),
            ("keys", "temp"),
            ("min", "low"),
            ("version", "1"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"widget-min-error\""), "{}", r.body);

    let r = add_widget(
        &mut b,
        "plant",
        &[
            ("type", "line_chart"),
            ("device", "boiler"),
            ("keys", "temp, pressure"),
            ("title", "Heat"),
            ("range", "30"),
            ("version", "1"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = add_widget(
        &mut b,
        "plant",
        &[
            ("type", "latest_value"),
            ("device", "boiler"),
            ("keys", "temp"),
            ("version", "2"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let d = admin.get("/api/v1/dashboards/plant").await.json;
    assert_eq!(d["version"], 3);
    let widgets = d["widgets"].as_array().unwrap();
    assert_eq!(widgets.len(), 2);
    assert_eq!(widgets[0]["keys"], json!(["temp", "pressure"]));
    assert_eq!(widgets[0]["range_ms"], 30 * 60_000);
    assert_eq!(widgets[1]["y"], 4, "added below: {d}");

    // A form from before the last change is refused.
    let stale = add_widget(
        &mut b,
        "plant",
        &[
            ("type", "table"),
            ("device", "boiler"),
            ("keys", "temp"),
            ("version", "2"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert!(stale.body.contains("changed meanwhile"), "{}", stale.body);

    // The widgets' data: the latest values of their keys.
    let r = s
        .api(&token)
        .post(
            "/api/v1/ingest/telemetry",
            json!({"temp": 71.5, "pressure": 2}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mut got = Value::Null;
    for _ in 0..50 {
        let data = b.get("/dashboards/plant/data").await;
        assert_eq!(data.status, 200, "{}", data.body);
        got = serde_json::from_str(&data.body).unwrap();
        if got["data"]["latest-value-1"]["latest"]["temp"]["value"] == 71.5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        got["data"]["latest-value-1"]["latest"]["temp"]["value"], 71.5,
        "{got}"
    );
    assert!(
        got["data"]["line-chart-1"]["history"]["temp"].is_array(),
        "{got}"
    );
    assert_eq!(got["version"], 3);

    // The layout as the script saves it: with the CSRF header only.
    let mut moved = d["widgets"].clone();
    moved[1]["x"] = json!(6);
    moved[1]["y"] = json!(0);
    let layout = json!({"version": 3, "widgets": moved});
    let (status, _) = save_layout(&s, &b, "plant", None, layout.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = save_layout(&s, &b, "plant", Some(&csrf), layout.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 4);
    let d = admin.get("/api/v1/dashboards/plant").await.json;
    assert_eq!(d["widgets"][1]["x"], 6);
    assert_eq!(d["widgets"][1]["y"], 0);
    let (status, body) = save_layout(&s, &b, "plant", Some(&csrf), layout).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("changed meanwhile"),
        "{body}"
    );
    let mut off_grid = d["widgets"].clone();
    off_grid[0]["x"] = json!(11);
    let (status, body) = save_layout(
        &s,
        &b,
        "plant",
        Some(&csrf),
        json!({"version": 4, "widgets": off_grid}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The edit mode's forms carry the version the page was read at.
    let edit = b.get("/dashboards/plant?edit=1").await;
    assert!(edit.body.contains("data-version=\"4\""), "{}", edit.body);
    assert!(edit.body.contains("name=\"version\" value=\"4\""));

    // The page lists the widgets in reading order, placed by the script.
    let page = b.get("/dashboards/plant").await;
    let chart = page.body.find("id=\"widget-line-chart-1\"").unwrap();
    let value = page.body.find("id=\"widget-latest-value-1\"").unwrap();
    assert!(chart < value);
    assert!(
        page.body.contains("data-x=\"6\" data-y=\"0\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("style="), "no inline styles");

    let r = b
        .post(
            "/dashboards/plant/widgets/latest-value-1/delete",
            &[("version", "4"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let d = admin.get("/api/v1/dashboards/plant").await.json;
    assert_eq!(d["widgets"].as_array().unwrap().len(), 1);

    let r = b.post("/dashboards/plant/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/api/v1/dashboards/plant").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_share_link_shows_the_dashboard_without_login_until_revoked() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin
        .post(
            "/api/v1/dashboards",
            json!({"id": "lobby", "name": "Lobby board", "widgets": [
                {"id": "t", "type": "latest_value", "x": 0, "y": 0, "w": 4, "h": 2, "device": "x", "keys": ["temp"]}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut b = Browser::admin(&s).await;
    let csrf = b.get("/dashboards/lobby").await.csrf();
    let r = b.post("/dashboards/lobby/share", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Autoescaped HTML writes `/` as `&#x2f;`.
    let at = r.body.find("&#x2f;share&#x2f;").expect("the link");
    let rest = &r.body[at + "&#x2f;share&#x2f;".len()..];
    let token = rest[..rest.find('"').unwrap()].to_owned();
    assert!(
        r.body
            .contains(&format!("value=\"{}", s.http.replace('/', "&#x2f;"))),
        "a full URL: {}",
        r.body
    );
    assert!(r.body.contains("shown only once"));
    assert!(
        b.get("/dashboards/lobby")
            .await
            .body
            .contains("Revoke share link")
    );

    // Nobody logged in: the dashboard, read only, and nothing of the session.
    let mut anyone = Browser::new(&s);
    let shared = anyone.get(&format!("/share/{token}")).await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert!(shared.body.contains("Lobby board"));
    assert!(shared.body.contains("id=\"widget-t\""));
    assert!(
        shared.body.contains(&format!(
            "data-source=\"&#x2f;api&#x2f;v1&#x2f;shared&#x2f;dashboards&#x2f;{token}\""
        )),
        "{}",
        shared.body
    );
    assert!(!shared.body.contains("name=\"csrf\""), "{}", shared.body);
    assert!(!shared.body.contains("Log out"));
    assert!(!shared.body.contains("href=\"/devices\""));
    assert!(anyone.session().is_none());
    let csp = shared.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let r = b
        .post("/dashboards/lobby/unshare", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let gone = anyone.get(&format!("/share/{token}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(
        gone.body.contains("revoked or never existed"),
        "{}",
        gone.body
    );
    assert!(!gone.body.contains("Lobby"), "{}", gone.body);
    let never = anyone.get("/share/fs_nothing").await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    assert!(never.body.contains("revoked or never existed"));
    s.stop().await;
}

#[tokio::test]
async fn dashboards_export_and_import_and_command_buttons_send() {
    let s = Server::start().await;
    let admin = s.admin().await;
    create_device(&admin, "gate").await;
    let r = admin
        .post(
            "/api/v1/dashboards",
            json!({"id": "gates", "name": "Gates", "widgets": [
                {"id": "open", "type": "command_button", "x": 0, "y": 0, "w": 3, "h": 2, "device": "gate",
                 "options": {"command": "open", "params": {"seconds": 5}}}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut b = Browser::admin(&s).await;
    let page = b.get("/dashboards/gates").await;
    assert!(page.body.contains("Send open"), "{}", page.body);
    let csrf = page.csrf();
    let r = b
        .post("/dashboards/gates/widgets/open/command", &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Command open sent to gate"), "{}", r.body);
    let sent = admin.get("/api/v1/devices/gate/commands").await;
    assert_eq!(sent.json["items"][0]["name"], "open", "{}", sent.text);
    assert_eq!(sent.json["items"][0]["params"], json!({"seconds": 5}));

    let export = b.get("/dashboards/gates/export").await;
    assert_eq!(export.status, 200, "{}", export.body);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment"),
    );
    let doc: Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(doc["format"], "ferrule.dashboard/1");

    let r = b
        .post(
            "/dashboards/import",
            &[("document", "{not json"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("id=\"import-document-error\""),
        "{}",
        r.body
    );
    let r = b
        .post(
            "/dashboards/import",
            &[
                ("document", &export.body),
                ("import_id", "gates"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"import-id-error\""), "{}", r.body);
    let r = b
        .post(
            "/dashboards/import",
            &[
                ("document", &export.body),
                ("import_id", "gates-2"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let copy = admin.get("/api/v1/dashboards/gates-2").await;
    assert_eq!(copy.json["name"], "Gates");
    assert_eq!(copy.json["widgets"][0]["options"]["command"], "open");
    s.stop().await;
}

#[tokio::test]
async fn viewers_see_dashboards_read_only_and_forged_posts_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    let r = admin
        .post(
            "/api/v1/dashboards",
            json!({"id": "ops", "name": "Ops", "widgets": [
                {"id": "b", "type": "command_button", "x": 0, "y": 0, "w": 3, "h": 2, "device": "gate",
                 "options": {"command": "open"}}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut viewer = Browser::new(&s);
    let r = viewer.login("v@x.io", USER_PASSWORD, "/dashboards").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let list = viewer.get("/dashboards").await;
    assert!(!list.body.contains("New dashboard"), "{}", list.body);
    assert!(!list.body.contains("Import a dashboard"));
    let page = viewer.get("/dashboards/ops?edit=1").await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("Add a widget"),
        "no edit mode for viewers"
    );
    assert!(
        !page.body.contains("Send open"),
        "no command button for viewers"
    );
    assert!(!page.body.contains("Share"));
    let csrf = page.csrf();
    for (path, form) in [
        ("/dashboards", vec![("name", "V"), ("csrf", csrf.as_str())]),
        (
            "/dashboards/ops/widgets",
            vec![("type", "alarm_list"), ("csrf", csrf.as_str())],
        ),
        (
            "/dashboards/ops/widgets/b/delete",
            vec![("csrf", csrf.as_str())],
        ),
        (
            "/dashboards/ops/widgets/b/command",
            vec![("csrf", csrf.as_str())],
        ),
        ("/dashboards/ops/share", vec![("csrf", csrf.as_str())]),
        ("/dashboards/ops/delete", vec![("csrf", csrf.as_str())]),
    ] {
        let r = viewer.post(path, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    let (status, _) = save_layout(
        &s,
        &viewer,
        "ops",
        Some(&csrf),
        json!({"version": 1, "widgets": []}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let d = admin.get("/api/v1/dashboards/ops").await.json;
    assert_eq!(d["version"], 1);
    assert_eq!(d["shared"], false);

    // An admin's forged posts: refused before anything happens.
    let mut b = Browser::admin(&s).await;
    let r = b
        .post("/dashboards/ops/delete", &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let csrf = b.csrf().await;
    let r = b
        .post_from(
            "/dashboards/ops/share",
            &[("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let d = admin.get("/api/v1/dashboards/ops").await.json;
    assert_eq!(d["shared"], false);
    assert_eq!(admin.get("/api/v1/dashboards/ops").await.status, 200);
    s.stop().await;
}

//! The console's device profiles page over HTTP, as a browser without
//! script: create, edit and delete through the API's profile functions,
//! errors next to their field (JSON that does not parse, with its line and
//! column; a schema that does not compile; defaults that are no object),
//! viewers read-only, forged posts refused, other tenants' profiles unseen.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::Browser;
use crate::util::{Server, USER_PASSWORD, tenant_with_owner, viewer_editor_owner};

const SCHEMA: &str =
    "{\n  \"type\": \"object\",\n  \"properties\": {\"temp\": {\"type\": \"number\"}}\n}";

#[tokio::test]
async fn profiles_are_created_edited_and_deleted_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/profiles").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("href=\"/profiles\" aria-current=\"page\"")
    );
    assert!(
        page.body
            .contains("<a href=\"/profiles/default\">default</a>")
    );
    let csrf = page.csrf();

    let r = b
        .post(
            "/profiles",
            &[
                ("name", "thermo"),
                ("description", "Room sensors"),
                ("retention_days", "30"),
                ("telemetry_schema", SCHEMA),
                ("state_schema", ""),
                ("defaults", "{\"max_temp\": 30}"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/profiles/thermo?saved=1");
    let got = admin.get("/api/v1/device-profiles/thermo").await.json;
    assert_eq!(got["description"], "Room sensors");
    assert_eq!(got["retention_days"], 30);
    assert_eq!(
        got["telemetry_schema"]["properties"]["temp"]["type"],
        "number"
    );
    assert_eq!(got["state_schema"], serde_json::Value::Null);
    assert_eq!(got["defaults"], json!({"max_temp": 30}));

    // The schema is in force: a device of the profile is held to it.
    let r = admin
        .post("/api/v1/devices", json!({"id": "t1", "profile": "thermo"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_owned();
    let r = s
        .api(&token)
        .post("/api/v1/ingest/telemetry", json!({"temp": "hot"}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // The device's page links to its profile.
    let page = b.get("/devices/t1").await;
    assert!(
        page.body.contains("href=\"/profiles/thermo\""),
        "{}",
        page.body
    );

    let page = b.get("/profiles/thermo?saved=1").await;
    assert!(page.body.contains("id=\"profile-saved\""), "{}", page.body);
    assert!(
        page.body.contains("&quot;max_temp&quot;: 30"),
        "{}",
        page.body
    );

    // Edit: the schema cleared, retention back to the tenant's.
    let r = b
        .post(
            "/profiles/thermo",
            &[
                ("description", "Room sensors, v2"),
                ("retention_days", ""),
                ("telemetry_schema", ""),
                ("state_schema", "{\"type\": \"object\"}"),
                ("defaults", ""),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = admin.get("/api/v1/device-profiles/thermo").await.json;
    assert_eq!(got["description"], "Room sensors, v2");
    assert_eq!(got["retention_days"], serde_json::Value::Null);
    assert_eq!(got["telemetry_schema"], serde_json::Value::Null);
    assert_eq!(got["state_schema"], json!({"type": "object"}));
    let r = s
        .api(&token)
        .post("/api/v1/ingest/telemetry", json!({"temp": "hot"}))
        .await;
    assert_eq!(r.status, 204, "no schema any more: {}", r.text);

    // In use: the delete is refused with the API's reason on the page.
    let page = b.get("/profiles/thermo/delete").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Delete profile thermo?"),
        "{}",
        page.body
    );
    let r = b.post("/profiles/thermo/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"profile-message\""), "{}", r.body);
    assert_eq!(
        admin.get("/api/v1/device-profiles/thermo").await.status,
        200
    );

    assert_eq!(admin.delete("/api/v1/devices/t1").await.status, 204);
    let r = b.post("/profiles/thermo/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    admin
        .get("/api/v1/device-profiles/thermo")
        .await
        .assert_problem(404);
    let page = b.get("/profiles").await;
    assert!(!page.body.contains("thermo"), "{}", page.body);
    s.stop().await;
}

/// A form's fields with its token.
fn with_csrf<'a>(mut fields: Vec<(&'a str, &'a str)>, csrf: &'a str) -> Vec<(&'a str, &'a str)> {
    fields.push(("csrf", csrf));
    fields
}

#[tokio::test]
async fn profile_errors_are_shown_next_to_their_field() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let post = |fields: Vec<(&'static str, &'static str)>| with_csrf(fields, &csrf);

    // JSON that does not parse: where it stops, the text kept.
    let broken = "{\n  \"type\": \"object\",\n  properties\n}";
    let r = b
        .post(
            "/profiles",
            &post(vec![("name", "bad"), ("telemetry_schema", broken)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body
            .contains("id=\"profile-telemetry-schema-error\">Line 3, column 3:"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("data-error-line=\"3\" data-error-column=\"3\"")
    );
    assert!(
        r.body
            .contains("&quot;type&quot;: &quot;object&quot;,\n  properties")
    );
    assert!(r.body.contains("value=\"bad\""), "the name is kept");

    // A schema that does not compile: the API's reason, at the field.
    let r = b
        .post(
            "/profiles",
            &post(vec![
                ("name", "bad"),
                ("state_schema", "{\"type\": \"no-such-type\"}"),
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("id=\"profile-state-schema-error\""),
        "{}",
        r.body
    );

    // Defaults that are no object; a retention out of range; a bad name.
    let r = b
        .post(
            "/profiles",
            &post(vec![("name", "bad"), ("defaults", "[1, 2]")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("id=\"profile-defaults-error\""),
        "{}",
        r.body
    );
    let r = b
        .post(
            "/profiles",
            &post(vec![("name", "bad"), ("retention_days", "0")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body.contains("id=\"profile-retention-error\""),
        "{}",
        r.body
    );
    let r = b
        .post("/profiles", &post(vec![("name", "no spaces")]))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"profile-name-error\""), "{}", r.body);

    // A taken name.
    let r = admin
        .post("/api/v1/device-profiles", json!({"name": "taken"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = b.post("/profiles", &post(vec![("name", "taken")])).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"profile-message\""), "{}", r.body);

    // Nothing refused was saved.
    admin
        .get("/api/v1/device-profiles/bad")
        .await
        .assert_problem(404);
    s.stop().await;
}

#[tokio::test]
async fn viewers_read_profiles_and_forged_posts_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let r = admin
        .post(
            "/api/v1/device-profiles",
            json!({"name": "gauge", "defaults": {"unit": "bar"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let _ = viewer_editor_owner(&s, &admin).await;

    let mut v = Browser::new(&s);
    let r = v.login("v@x.io", USER_PASSWORD, "/profiles").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = v.get("/profiles").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/profiles/gauge"), "{}", page.body);
    assert!(!page.body.contains("id=\"new-profile\""), "{}", page.body);
    let page = v.get("/profiles/gauge").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"profile-read-only\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"profile-save\""), "{}", page.body);
    assert!(
        !page.body.contains("id=\"profile-delete\""),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let r = v
        .post(
            "/profiles/gauge",
            &[("defaults", "{\"unit\": \"psi\"}"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = v
        .post("/profiles", &[("name", "mine"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(v.get("/profiles/new").await.status, StatusCode::FORBIDDEN);
    let r = v.post("/profiles/gauge/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // An editor may; but not with a forged or missing token, or from
    // another site.
    let mut e = Browser::new(&s);
    e.login("e@x.io", USER_PASSWORD, "/profiles").await;
    let csrf = e.csrf().await;
    let change = [("defaults", "{\"unit\": \"psi\"}")];
    let r = e
        .post("/profiles/gauge", &[change[0], ("csrf", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = e.post("/profiles/gauge", &change).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = e
        .post_from(
            "/profiles/gauge",
            &[change[0], ("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let got = admin.get("/api/v1/device-profiles/gauge").await.json;
    assert_eq!(got["defaults"], json!({"unit": "bar"}));
    let r = e
        .post("/profiles/gauge", &[change[0], ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = admin.get("/api/v1/device-profiles/gauge").await.json;
    assert_eq!(got["defaults"], json!({"unit": "psi"}));

    // Another tenant's owner sees none of this tenant's profiles.
    tenant_with_owner(&s, &admin, "beta").await;
    let mut o = Browser::new(&s);
    o.login("owner@beta.example", "owner-password", "/profiles")
        .await;
    let page = o.get("/profiles").await;
    assert!(!page.body.contains("gauge"), "{}", page.body);
    assert_eq!(o.get("/profiles/gauge").await.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn the_profiles_page_works_in_a_real_browser() {
    crate::console_e2e::run_script("e2e-profiles.mjs").await;
}

//! The device page's twin, commands, events and alarms panels, and the
//! alarms page, as a browser without JavaScript uses them (the
//! cookie-keeping `Browser` of `console`): each form valid, invalid,
//! refused for a viewer and refused when forged. The browser run is
//! `e2e-device.mjs`.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::Browser;
use crate::util::{Server, USER_PASSWORD, viewer_editor_owner};

/// A device `id`, created through the API; its token.
async fn device(admin: &crate::util::Api, id: &str) -> String {
    let r = admin.post("/api/v1/devices", json!({"id": id})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["token"].as_str().unwrap().to_owned()
}

async fn viewer(s: &Server) -> Browser {
    let mut v = Browser::new(s);
    let r = v.login("v@x.io", USER_PASSWORD, "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    v
}

#[tokio::test]
async fn desired_state_changes_through_the_twin_form_with_the_version_shown() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let token = device(&admin, "pump").await;
    // Reported state, as the device sends it.
    let r = s
        .api(&token)
        .post("/api/v1/ingest/state/reported", json!({"fw": "1.0"}))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let mut b = Browser::admin(&s).await;
    let page = b.get("/devices/pump").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"twin-version\">0<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("&quot;fw&quot;: &quot;1.0&quot;"));
    let csrf = page.csrf();

    let r = b
        .post(
            "/devices/pump/twin",
            &[
                ("patch", r#"{"interval": 30}"#),
                ("version", "0"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let twin = admin.get("/api/v1/devices/pump/state").await;
    assert_eq!(twin.json["desired"]["interval"], 30, "{}", twin.text);
    assert_eq!(twin.json["delta"]["interval"], 30);
    let page = b.get("/devices/pump").await;
    assert!(
        page.body.contains("id=\"twin-version\">1<"),
        "{}",
        page.body
    );

    // Based on version 0, which is gone: refused, the patch kept.
    let r = b
        .post(
            "/devices/pump/twin",
            &[
                ("patch", r#"{"interval": 60}"#),
                ("version", "0"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    assert!(r.body.contains("changed meanwhile"), "{}", r.body);
    assert!(r.body.contains("id=\"twin-patch-error\""));
    assert!(
        r.body.contains("&quot;interval&quot;: 60}</textarea>"),
        "{}",
        r.body
    );
    assert_eq!(
        admin.get("/api/v1/devices/pump/state").await.json["desired"]["interval"],
        30
    );

    // Not JSON, or not an object: next to the field.
    for bad in ["{interval: 60", "[1]"] {
        let r = b
            .post(
                "/devices/pump/twin",
                &[("patch", bad), ("version", "1"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(r.body.contains("id=\"twin-patch-error\""), "{}", r.body);
        assert!(r.body.contains("aria-invalid=\"true\""));
    }

    // Forged: refused before anything changes.
    let r = b
        .post(
            "/devices/pump/twin",
            &[
                ("patch", r#"{"interval": 1}"#),
                ("version", "1"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post_from(
            "/devices/pump/twin",
            &[
                ("patch", r#"{"interval": 1}"#),
                ("version", "1"),
                ("csrf", &csrf),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A viewer sees the twin, no editor, and is refused anyway.
    viewer_editor_owner(&s, &admin).await;
    let mut v = viewer(&s).await;
    let page = v.get("/devices/pump").await;
    assert!(page.body.contains("id=\"twin-desired\""));
    assert!(
        !page.body.contains("id=\"twin-patch\""),
        "no editor for viewers"
    );
    let csrf = page.csrf();
    let r = v
        .post(
            "/devices/pump/twin",
            &[
                ("patch", r#"{"interval": 1}"#),
                ("version", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        admin.get("/api/v1/devices/pump/state").await.json["desired"]["interval"],
        30
    );
    s.stop().await;
}

#[tokio::test]
async fn commands_are_queued_from_the_page_and_listed_in_the_outbox() {
    let s = Server::start().await;
    let admin = s.admin().await;
    device(&admin, "pump").await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/devices/pump").await;
    assert!(page.body.contains("No commands sent yet."));
    let csrf = page.csrf();

    let r = b
        .post(
            "/devices/pump/commands",
            &[
                ("name", "reboot"),
                ("params", r#"{"delay": 5}"#),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let listed = admin.get("/api/v1/devices/pump/commands").await;
    assert_eq!(listed.json["items"][0]["name"], "reboot", "{}", listed.text);
    assert_eq!(listed.json["items"][0]["params"]["delay"], 5);
    assert_eq!(listed.json["items"][0]["state"], "pending");
    let outbox = b.get("/devices/pump/commands").await;
    assert_eq!(outbox.status, 200);
    assert!(outbox.body.contains(">reboot<"), "{}", outbox.body);
    assert!(outbox.body.contains("state-pending"));
    assert!(!outbox.body.contains("<html"), "a fragment for htmx");

    // Parameters that are not JSON; a name the API refuses; no name.
    let r = b
        .post(
            "/devices/pump/commands",
            &[("name", "reboot"), ("params", "{delay"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"command-params-error\""), "{}", r.body);
    assert!(r.body.contains(">{delay</textarea>"), "kept: {}", r.body);
    for name in ["bad name!", ""] {
        let r = b
            .post(
                "/devices/pump/commands",
                &[("name", name), ("params", ""), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.body);
        assert!(r.body.contains("id=\"command-name-error\""), "{}", r.body);
    }
    let r = b
        .post(
            "/devices/pump/commands",
            &[("name", "reboot"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    viewer_editor_owner(&s, &admin).await;
    let mut v = viewer(&s).await;
    let page = v.get("/devices/pump").await;
    assert!(
        !page.body.contains("id=\"command-name\""),
        "no form for viewers"
    );
    assert!(page.body.contains(">reboot<"), "viewers see the outbox");
    let csrf = page.csrf();
    let r = v
        .post(
            "/devices/pump/commands",
            &[("name", "reboot"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let listed = admin.get("/api/v1/devices/pump/commands").await;
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_device_page_shows_events_alarms_open_first_and_connectivity() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let token = device(&admin, "pump").await;
    let r = s
        .api(&token)
        .post("/api/v1/ingest/events/boot", json!({"reason": "power-on"}))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let old = admin
        .post(
            "/api/v1/alarms",
            json!({"device": "pump", "type": "old-leak"}),
        )
        .await;
    let old_id = old.json["alarm"]["id"].as_u64().unwrap();
    assert_eq!(
        admin
            .post(&format!("/api/v1/alarms/{old_id}/clear"), json!({}))
            .await
            .status,
        200
    );
    admin
        .post(
            "/api/v1/alarms",
            json!({"device": "pump", "type": "overheat", "severity": "critical"}),
        )
        .await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/devices/pump").await;
    assert!(page.body.contains(">boot<"), "{}", page.body);
    assert!(
        page.body
            .contains("&quot;reason&quot;:&quot;power-on&quot;")
    );
    let open = page.body.find("overheat").expect("the open alarm");
    let cleared = page.body.find("old-leak").expect("the cleared alarm");
    assert!(open < cleared, "open alarms first");
    assert!(page.body.contains("Disconnected at"));
    assert!(page.body.contains("The device has not connected yet."));

    // A connection and its end, as the device's connectivity history.
    let (host, port) = s.mqtt.rsplit_once(':').unwrap();
    let out = std::process::Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-u", &token, "-i", "pump-cli"])
        .args([
            "-t",
            "devices/pump/telemetry",
            "-m",
            r#"{"t":1}"#,
            "-q",
            "1",
        ])
        .output()
        .expect("mosquitto_pub runs");
    assert!(out.status.success(), "{out:?}");
    let mut page = b.get("/devices/pump").await;
    for _ in 0..50 {
        if page.body.contains(">disconnected<") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = b.get("/devices/pump").await;
    }
    let history = &page.body[page
        .body
        .find("id=\"connectivity-list\"")
        .expect("a history")..];
    let disconnected = history.find(">disconnected<").expect("the disconnect");
    let connected = history.find(">connected<").expect("the connect");
    assert!(disconnected < connected, "newest first: {history}");
    assert!(history.contains("client disconnect"), "{history}");
    assert!(history.contains("pump-cli"));
    let events = &page.body[page.body.find("id=\"events-title\"").unwrap()..];
    assert!(
        events.find(">connectivity<").unwrap() < events.find(">boot<").unwrap(),
        "events newest first"
    );

    // The panel shows the 20 most recent events, newest first.
    for i in 0..25 {
        let r = s
            .api(&token)
            .post(&format!("/api/v1/ingest/events/tick-{i:02}"), json!({}))
            .await;
        assert!(r.status < 300, "{}", r.text);
    }
    let page = b.get("/devices/pump").await;
    let events = &page.body[page.body.find("id=\"events-title\"").unwrap()..];
    assert_eq!(events.matches(">tick-").count(), 20, "{events}");
    assert!(events.find(">tick-24<").unwrap() < events.find(">tick-05<").unwrap());
    assert!(!events.contains(">tick-04<") && !events.contains(">boot<"));
    s.stop().await;
}

#[tokio::test]
async fn alarms_are_filtered_paged_acknowledged_and_cleared() {
    let s = Server::start().await;
    let admin = s.admin().await;
    device(&admin, "pump").await;
    device(&admin, "fan").await;
    let raise = |device: &'static str, kind: &'static str, severity: &'static str| {
        let admin = &admin;
        async move {
            let r = admin
                .post(
                    "/api/v1/alarms",
                    json!({"device": device, "type": kind, "severity": severity}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.json["alarm"]["id"].as_u64().unwrap()
        }
    };
    let hot = raise("pump", "overheat", "critical").await;
    raise("fan", "stall", "minor").await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/alarms").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("aria-current=\"page\">Alarms<"));
    assert!(page.body.contains("overheat") && page.body.contains("stall"));
    let page = b.get("/alarms?severity=critical").await;
    assert!(page.body.contains("overheat") && !page.body.contains("stall"));
    let page = b.get("/alarms?device=fan&range=1h").await;
    assert!(!page.body.contains("overheat") && page.body.contains("stall"));
    let csrf = page.csrf();

    let back = "/alarms?severity=critical";
    let r = b
        .post(
            &format!("/alarms/{hot}/ack"),
            &[("back", back), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), back);
    let a = admin.get(&format!("/api/v1/alarms/{hot}")).await;
    assert_eq!(a.json["state"], "acknowledged");
    // Again: the API's 409, as a message over the list.
    let r = b
        .post(
            &format!("/alarms/{hot}/ack"),
            &[("back", back), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"alarm-message\""), "{}", r.body);
    assert!(r.body.contains("overheat"), "the list is shown again");

    let r = b
        .post(
            &format!("/alarms/{hot}/clear"),
            &[("back", "https://evil.example/"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/", "never redirected off the site");
    assert_eq!(
        admin.get(&format!("/api/v1/alarms/{hot}")).await.json["state"],
        "cleared"
    );
    let history = b.get("/alarms?state=cleared").await;
    assert!(history.body.contains("overheat") && !history.body.contains("stall"));
    let r = b
        .post(&format!("/alarms/{hot}/clear"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Forged and viewer: refused, nothing changes.
    let fan = admin.get("/api/v1/alarms?device=fan").await.json["items"][0]["id"]
        .as_u64()
        .unwrap();
    let r = b
        .post(&format!("/alarms/{fan}/ack"), &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    viewer_editor_owner(&s, &admin).await;
    let mut v = viewer(&s).await;
    let page = v.get("/alarms").await;
    assert!(page.body.contains("stall"));
    assert!(
        !page.body.contains("Acknowledge alarm"),
        "no buttons for viewers"
    );
    let csrf = page.csrf();
    let r = v
        .post(&format!("/alarms/{fan}/ack"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin.get(&format!("/api/v1/alarms/{fan}")).await.json["state"],
        "active"
    );

    // Paging: 50 a page, then a link to the next.
    for i in 0..55 {
        let kind: &'static str = Box::leak(format!("bulk-{i}").into_boxed_str());
        raise("pump", kind, "warning").await;
    }
    let page = b.get("/alarms?severity=warning").await;
    assert_eq!(page.body.matches("data-alarm=").count(), 50);
    let at = page.body.find("Next page").expect("a next page");
    let href_at = page.body[..at].rfind("href=\"").unwrap() + 6;
    let href = &page.body[href_at..];
    let href = href[..href.find('"').unwrap()]
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let next = b.get(&href).await;
    assert_eq!(next.body.matches("data-alarm=").count(), 5, "{href}");
    assert!(next.body.contains("First page"));
    s.stop().await;
}

#[tokio::test]
async fn the_device_twin_commands_and_alarms_work_in_a_real_browser() {
    crate::console_e2e::run_script("e2e-device.mjs").await;
}

/// The id in the first `href="/access/{kind}/ID/delete"` of a row that
/// holds `marker`.
fn delete_link(body: &str, marker: &str) -> String {
    let row = &body[body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"))..];
    let at = row.find("/delete\"").expect("a delete link");
    let start = row[..at].rfind('/').unwrap() + 1;
    row[start..at].to_owned()
}

#[tokio::test]
async fn owners_manage_users_and_api_keys_on_the_access_page() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let [_, _, owner_api] = viewer_editor_owner(&s, &admin).await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/access").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("aria-current=\"page\">Access<"));
    assert!(page.body.contains("data-user=\"e@x.io\""));
    let csrf = page.csrf();

    // Create a user: invalid, too short a password, valid, duplicate.
    let r = b
        .post(
            "/access/users",
            &[
                ("email", "nope"),
                ("password", "long-enough"),
                ("role", "viewer"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"user-email-error\""), "{}", r.body);
    assert!(
        !r.body.contains("long-enough"),
        "a password never comes back"
    );
    let r = b
        .post(
            "/access/users",
            &[
                ("email", "n@x.io"),
                ("password", "short"),
                ("role", "viewer"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"user-password-error\""), "{}", r.body);
    let new_user = [
        ("email", "n@x.io"),
        ("password", "password-9"),
        ("role", "editor"),
        ("csrf", csrf.as_str()),
    ];
    let r = b.post("/access/users", &new_user).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = b.post("/access/users", &new_user).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("id=\"user-email-error\""), "{}", r.body);
    let token = s.login("n@x.io", "password-9").await;
    assert_eq!(
        s.api(&token).get("/api/v1/auth/me").await.json["role"],
        "editor"
    );

    // Change a role.
    let page = b.get("/access").await;
    let id = delete_link(&page.body, "data-user=\"n@x.io\"");
    let r = b
        .post(
            &format!("/access/users/{id}/role"),
            &[("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        admin.get(&format!("/api/v1/users/{id}")).await.json["role"],
        "viewer"
    );

    // An API key: its secret once, then only its name.
    let r = b
        .post(
            "/access/api-keys",
            &[("name", " "), ("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"key-name-error\""), "{}", r.body);
    let r = b
        .post(
            "/access/api-keys",
            &[("name", "grafana"), ("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let at = r.body.find("id=\"key-secret\"").expect("the secret shown");
    let value = &r.body[at..][r.body[at..].find("value=\"").unwrap() + 7..];
    let secret = &value[..value.find('"').unwrap()];
    assert_eq!(s.api(secret).get("/api/v1/devices").await.status, 200);
    let page = b.get("/access").await;
    assert!(page.body.contains("data-key=\"grafana\""));
    assert!(!page.body.contains(secret), "the secret is shown once only");
    let key = delete_link(&page.body, "data-key=\"grafana\"");
    let confirm = b.get(&format!("/access/api-keys/{key}/delete")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Revoke API key grafana"));
    let r = b
        .post(
            &format!("/access/api-keys/{key}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(s.api(secret).get("/api/v1/devices").await.status, 401);
    assert!(b.get("/access").await.body.contains(">revoked<"));

    // Deleting oneself: the API's 409, as a message.
    let me = admin.get("/api/v1/auth/me").await.json["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = b
        .post(&format!("/access/users/{me}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"access-message\""));
    // Forged: refused.
    let r = b
        .post(&format!("/access/users/{id}/delete"), &[("csrf", "forged")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(&format!("/access/users/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get(&format!("/api/v1/users/{id}")).await.status, 404);

    // An owner may not grant or touch a role above its own.
    let _ = owner_api;
    let mut owner = Browser::new(&s);
    let r = owner.login("o@x.io", USER_PASSWORD, "/access").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = owner.get("/access").await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("<option value=\"admin\""),
        "admin is not offered"
    );
    let csrf = page.csrf();
    let r = owner
        .post(
            "/access/users",
            &[
                ("email", "a2@x.io"),
                ("password", "password-9"),
                ("role", "admin"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = owner
        .post(&format!("/access/users/{me}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "outranked: {}", r.body);
    assert_eq!(admin.get(&format!("/api/v1/users/{me}")).await.status, 200);

    // Editors and viewers: no page, no nav entry, no writes.
    let mut editor = Browser::new(&s);
    let r = editor.login("e@x.io", USER_PASSWORD, "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = editor.get("/devices").await;
    assert!(!page.body.contains("href=\"/access\""));
    let csrf = page.csrf();
    let r = editor.get("/access").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("needs the owner role"), "{}", r.body);
    let r = editor
        .post(
            "/access/api-keys",
            &[("name", "x"), ("role", "viewer"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    s.stop().await;
}

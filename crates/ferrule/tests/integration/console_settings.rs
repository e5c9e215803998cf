//! The console's settings page over HTTP, as a browser without script:
//! retention and the disk budget saved through the API's telemetry
//! settings (errors next to their fields), the admin's ceiling that an
//! owner cannot lift, viewers and editors read-only, forged posts refused.

use reqwest::StatusCode;

use crate::console::Browser;
use crate::util::{Server, USER_PASSWORD, viewer_editor_owner};

const MIB: u64 = 1024 * 1024;

async fn logged_in(s: &Server, email: &str) -> Browser {
    let mut b = Browser::new(s);
    let r = b.login(email, USER_PASSWORD, "/settings").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    b
}

#[tokio::test]
async fn retention_and_disk_budget_are_saved_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("href=\"/settings\" aria-current=\"page\"")
    );
    assert!(page.body.contains("no budget set"), "{}", page.body);
    assert!(
        page.body.contains("name=\"ceiling\""),
        "admins set the ceiling"
    );
    let csrf = page.csrf();

    let r = b
        .post(
            "/settings/retention",
            &[
                ("retention_days", "30"),
                ("new_profile", "sensor"),
                ("new_profile_days", "7"),
                ("disk_budget", "50"),
                ("ceiling", "100"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["retention_days"], 30);
    assert_eq!(got["profiles"]["sensor"], 7);
    assert_eq!(got["disk_budget_bytes"], 50 * MIB);
    assert_eq!(got["disk_budget_ceiling_bytes"], 100 * MIB);

    let page = b.get("/settings?saved=retention").await;
    assert!(page.body.contains("id=\"settings-saved\""), "{}", page.body);
    assert!(
        page.body.contains("name=\"profile:sensor\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<meter id=\"disk-meter\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("of 50.0 MiB"), "{}", page.body);

    // An override left empty is removed; the budget cleared.
    let r = b
        .post(
            "/settings/retention",
            &[
                ("retention_days", "30"),
                ("profile:sensor", ""),
                ("disk_budget", ""),
                ("ceiling", "100"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["profiles"], serde_json::json!({}));
    assert_eq!(got["disk_budget_bytes"], serde_json::Value::Null);
    assert_eq!(got["disk_budget_ceiling_bytes"], 100 * MIB);
    s.stop().await;
}

#[tokio::test]
async fn invalid_retention_shows_the_error_next_to_the_field() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    for (form, field, says, status) in [
        (
            vec![("retention_days", "soon")],
            "retention-days-error",
            "whole number of days",
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("retention_days", "0")],
            "retention-days-error",
            "between 1 and 36500",
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("new_profile", "sensor"), ("new_profile_days", "99999")],
            "new-profile-days-error",
            "between 1 and 36500",
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("new_profile_days", "3")],
            "new-profile-error",
            "Name the device profile",
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("disk_budget", "lots")],
            "disk-budget-error",
            "whole number of MiB",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let mut form = form;
        form.push(("csrf", &csrf));
        let r = b.post("/settings/retention", &form).await;
        assert_eq!(r.status, status, "{form:?}: {}", r.body);
        assert!(
            r.body.contains(&format!("id=\"{field}\"")),
            "{form:?}: {}",
            r.body
        );
        assert!(r.body.contains(says), "{says}: {}", r.body);
        assert!(r.body.contains("aria-invalid=\"true\""), "{}", r.body);
    }
    // What was typed is kept.
    let r = b
        .post(
            "/settings/retention",
            &[("retention_days", "soon"), ("csrf", &csrf)],
        )
        .await;
    assert!(r.body.contains("value=\"soon\""), "{}", r.body);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["retention_days"], serde_json::Value::Null);
    assert_eq!(got["profiles"], serde_json::json!({}));
    s.stop().await;
}

#[tokio::test]
async fn an_owner_sets_a_lower_budget_but_cannot_lift_the_admins_ceiling() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    let mut a = Browser::admin(&s).await;
    let csrf = a.csrf().await;
    let r = a
        .post(
            "/settings/retention",
            &[("ceiling", "100"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let mut owner = logged_in(&s, "o@x.io").await;
    let page = owner.get("/settings").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("name=\"ceiling\""), "{}", page.body);
    assert!(
        page.body.contains(
            "Ceiling set by a server admin: 100.0 MiB. Only a server admin can raise it."
        ),
        "{}",
        page.body
    );
    let csrf = page.csrf();

    // Above the ceiling: the API's refusal next to the budget.
    let r = owner
        .post(
            "/settings/retention",
            &[("disk_budget", "200"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"disk-budget-error\""), "{}", r.body);
    assert!(r.body.contains("ask a server admin"), "{}", r.body);
    assert!(r.body.contains("value=\"200\""), "{}", r.body);

    // A ceiling field sent anyway: the API refuses the owner.
    let r = owner
        .post(
            "/settings/retention",
            &[("disk_budget", "500"), ("ceiling", "1000"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("only a server admin"), "{}", r.body);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["disk_budget_ceiling_bytes"], 100 * MIB);
    assert_eq!(got["disk_budget_bytes"], serde_json::Value::Null);

    // At or below the ceiling: saved, the ceiling kept.
    let r = owner
        .post(
            "/settings/retention",
            &[
                ("retention_days", "14"),
                ("disk_budget", "80"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["retention_days"], 14);
    assert_eq!(got["disk_budget_bytes"], 80 * MIB);
    assert_eq!(got["disk_budget_ceiling_bytes"], 100 * MIB);
    s.stop().await;
}

#[tokio::test]
async fn viewers_and_editors_read_settings_and_cannot_change_them() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    for email in ["v@x.io", "e@x.io"] {
        let mut b = logged_in(&s, email).await;
        let page = b.get("/settings").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains("href=\"/settings\""),
            "nav entry for everyone"
        );
        assert!(
            page.body.contains("id=\"retention-facts\""),
            "{}",
            page.body
        );
        assert!(!page.body.contains("action=\"/settings/retention\""));
        let csrf = page.csrf();
        let r = b
            .post(
                "/settings/retention",
                &[("retention_days", "3"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{email}: {}", r.body);
        assert!(r.body.contains("owner role"), "{}", r.body);
    }
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["retention_days"], serde_json::Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn forged_settings_posts_are_refused_and_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let r = b
        .post(
            "/settings/retention",
            &[("retention_days", "3"), ("csrf", "nope")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = b
        .post("/settings/retention", &[("retention_days", "3")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post_from(
            "/settings/retention",
            &[("retention_days", "3"), ("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let got = admin.get("/api/v1/telemetry/settings").await.json;
    assert_eq!(got["retention_days"], serde_json::Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn acl_rules_are_added_edited_and_deleted_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let page = b.get("/settings").await;
    assert!(page.body.contains("id=\"acl-empty\""), "{}", page.body);
    let csrf = page.csrf();

    // The API's topic check, next to the topic field; what was typed kept.
    let r = b
        .post(
            "/settings/acl",
            &[
                ("effect", "deny"),
                ("action", "publish"),
                ("topic", "alerts/#/more"),
                ("subject", "devices"),
                ("priority", "5"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"acl-topic-error\""), "{}", r.body);
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(
        r.body.contains("value=\"alerts&#x2f;#&#x2f;more\""),
        "{}",
        r.body
    );
    // A priority that is not a number, a choice not offered.
    let r = b
        .post(
            "/settings/acl",
            &[
                ("effect", "maybe"),
                ("action", "publish"),
                ("topic", "alerts/#"),
                ("subject", "devices"),
                ("priority", "high"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"acl-priority-error\""), "{}", r.body);
    assert!(r.body.contains("id=\"acl-effect-error\""), "{}", r.body);
    let rules = admin.get("/api/v1/acl-rules").await.json;
    assert_eq!(rules, serde_json::json!([]));

    let r = b
        .post(
            "/settings/acl",
            &[
                ("effect", "deny"),
                ("action", "publish"),
                ("topic", "alerts/#"),
                ("subject", "devices"),
                ("priority", "5"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rules = admin.get("/api/v1/acl-rules").await.json;
    assert_eq!(rules[0]["effect"], "deny");
    assert_eq!(rules[0]["topic"], "alerts/#");
    assert_eq!(rules[0]["priority"], 5);
    let id = rules[0]["id"].as_str().unwrap().to_owned();
    let page = b.get("/settings?saved=acl").await;
    assert!(page.body.contains("Access rule saved."), "{}", page.body);
    assert!(page.body.contains(&format!("href=\"/settings/acl/{id}\"")));

    // Edit: the API's error next to the field, then saved.
    let edit = b.get(&format!("/settings/acl/{id}")).await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert!(edit.body.contains("value=\"5\""), "{}", edit.body);
    let bad = b
        .post(
            &format!("/settings/acl/{id}"),
            &[
                ("effect", "allow"),
                ("action", "subscribe"),
                ("topic", ""),
                ("subject", "users"),
                ("priority", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("id=\"acl-edit-topic-error\""),
        "{}",
        bad.body
    );
    let r = b
        .post(
            &format!("/settings/acl/{id}"),
            &[
                ("effect", "allow"),
                ("action", "subscribe"),
                ("topic", "devices/{device_id}/commands"),
                ("subject", "users"),
                ("priority", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rule = admin.get(&format!("/api/v1/acl-rules/{id}")).await.json;
    assert_eq!(rule["effect"], "allow");
    assert_eq!(rule["action"], "subscribe");
    assert_eq!(rule["topic"], "devices/{device_id}/commands");
    assert_eq!(rule["subject"], "users");
    assert_eq!(rule["priority"], 1);

    let r = b
        .post(&format!("/settings/acl/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        admin.get(&format!("/api/v1/acl-rules/{id}")).await.status,
        404
    );
    s.stop().await;
}

#[tokio::test]
async fn viewers_and_editors_read_acl_rules_and_cannot_change_them_nor_forge() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    let r = admin
        .post(
            "/api/v1/acl-rules",
            serde_json::json!({"effect": "deny", "action": "all", "topic": "secret/#", "subject": "all"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let rule = [
        ("effect", "allow"),
        ("action", "publish"),
        ("topic", "x/#"),
        ("subject", "devices"),
    ];
    for email in ["v@x.io", "e@x.io"] {
        let mut b = logged_in(&s, email).await;
        let page = b.get("/settings").await;
        assert!(page.body.contains("secret&#x2f;#"), "{}", page.body);
        assert!(
            !page.body.contains("action=\"/settings/acl\""),
            "{}",
            page.body
        );
        assert!(page.body.contains("Only owners change access rules."));
        let csrf = page.csrf();
        let mut form = rule.to_vec();
        form.push(("csrf", &csrf));
        for path in [
            "/settings/acl".to_owned(),
            format!("/settings/acl/{id}"),
            format!("/settings/acl/{id}/delete"),
        ] {
            let r = b.post(&path, &form).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{email} {path}: {}",
                r.body
            );
        }
    }
    // Owners may; forged posts may not.
    let mut owner = logged_in(&s, "o@x.io").await;
    let csrf = owner.csrf().await;
    let r = owner
        .post(&format!("/settings/acl/{id}/delete"), &[("csrf", "nope")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = owner
        .post_from(
            "/settings/acl",
            &[rule.as_slice(), &[("csrf", csrf.as_str())]].concat(),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let rules = admin.get("/api/v1/acl-rules").await.json;
    assert_eq!(rules.as_array().unwrap().len(), 1, "{rules}");
    let r = owner
        .post(&format!("/settings/acl/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        admin.get("/api/v1/acl-rules").await.json,
        serde_json::json!([])
    );
    s.stop().await;
}

#[tokio::test]
async fn the_settings_page_works_in_a_real_browser() {
    crate::console_e2e::run_script("e2e-settings.mjs").await;
}

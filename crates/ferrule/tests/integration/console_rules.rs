//! The console's rules pages over HTTP, as a browser without script: the
//! list, the editor (SQL errors at their line and column, actions JSON),
//! saving with the version read, enable and disable, the dry run, dead
//! letters replayed and deleted, viewers read-only with webhook headers
//! hidden, forged posts refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::console::Browser;
use crate::mqtt_util::create_device;
use crate::rules_util::{Hook, create_rule, rule_until};
use crate::util::{Server, ServerBuilder, USER_PASSWORD, viewer_editor_owner};

const SQL: &str =
    "SELECT temperature AS t, topic(2) AS device FROM 'devices/+/telemetry' WHERE temperature > 30";
// Autoescaped HTML writes `/` as `&#x2f;`.
const REPUBLISH: &str =
    r#"[{"type": "republish", "topic": "alerts/${device}", "payload": "hot: ${t}"}]"#;

#[tokio::test]
async fn rules_are_created_edited_enabled_and_disabled_through_the_console() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let mut b = Browser::admin(&s).await;
    let list = b.get("/rules").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("No rules yet"), "{}", list.body);
    assert!(list.body.contains("href=\"/rules/new\""));
    let csrf = list.csrf();

    // SQL that does not compile: the place, next to the field, the caret's
    // line and column for the script, and what was typed kept.
    let bad_sql = "SELECT temperature\nFROM 'devices/+/telemetry'\nWHERE temperature >";
    let r = b
        .post(
            "/rules",
            &[
                ("id", "hot"),
                ("sql", bad_sql),
                ("actions", REPUBLISH),
                ("enabled", "on"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"rule-sql-error\""), "{}", r.body);
    assert!(r.body.contains("line 3, column"), "{}", r.body);
    assert!(r.body.contains("data-error-line=\"3\""), "{}", r.body);
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(
        r.body.contains("WHERE temperature &gt;</textarea>"),
        "{}",
        r.body
    );
    assert_eq!(admin.get("/api/v1/rules/hot").await.status, 404);

    // Actions that are not JSON, or not a list, or not an action.
    for (actions, says) in [
        ("[{", "Not valid JSON"),
        ("{}", "must be a JSON list"),
        (r#"[{"type": "teleport"}]"#, "teleport"),
    ] {
        let r = b
            .post(
                "/rules",
                &[
                    ("id", "hot"),
                    ("sql", SQL),
                    ("actions", actions),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{actions}: {}", r.body);
        assert!(r.body.contains("id=\"rule-actions-error\""), "{}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
    }

    let r = b
        .post(
            "/rules",
            &[
                ("id", "hot"),
                ("name", "Too hot"),
                ("sql", SQL),
                ("actions", REPUBLISH),
                ("enabled", "on"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/rules/hot");
    let rule = admin.get("/api/v1/rules/hot").await;
    assert_eq!(rule.json["name"], "Too hot");
    assert_eq!(rule.json["enabled"], true);
    assert_eq!(rule.json["actions"][0]["topic"], "alerts/${device}");

    // A second rule with that id: the id's error.
    let dup = b
        .post("/rules", &[("id", "hot"), ("sql", SQL), ("csrf", &csrf)])
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    assert!(dup.body.contains("id=\"rule-id-error\""), "{}", dup.body);

    let list = b.get("/rules").await;
    assert!(list.body.contains("href=\"/rules/hot\""), "{}", list.body);
    assert!(list.body.contains("badge on\">enabled"));
    assert!(list.body.contains("devices&#x2f;+&#x2f;telemetry"));

    let page = b.get("/rules/hot").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"version\" value=\"1\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Disable</button>"));

    // Saved from version 1; then a save still based on 1 is refused.
    let edit = [
        ("id", "hot"),
        ("version", "1"),
        ("name", "Very hot"),
        ("sql", SQL),
        ("actions", REPUBLISH),
        ("enabled", "on"),
        ("csrf", csrf.as_str()),
    ];
    let r = b.post("/rules/hot", &edit).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rule = admin.get("/api/v1/rules/hot").await;
    assert_eq!(rule.json["name"], "Very hot");
    assert_eq!(rule.json["version"], 2);
    let stale = b.post("/rules/hot", &edit).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert!(stale.body.contains("changed meanwhile"), "{}", stale.body);
    assert!(stale.body.contains("Reload"));

    // An invalid edit keeps the stored rule.
    let r = b
        .post(
            "/rules/hot",
            &[
                ("id", "hot"),
                ("version", "2"),
                ("sql", "SELECT FROM"),
                ("actions", "[]"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("line 1, column"), "{}", r.body);
    assert_eq!(admin.get("/api/v1/rules/hot").await.json["version"], 2);

    let r = b.post("/rules/hot/disable", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(admin.get("/api/v1/rules/hot").await.json["enabled"], false);
    let page = b.get("/rules/hot").await;
    assert!(page.body.contains("Enable</button>"), "{}", page.body);
    assert!(page.body.contains("badge off\">disabled"));
    let r = b.post("/rules/hot/enable", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/api/v1/rules/hot").await.json["enabled"], true);

    let r = b.post("/rules/hot/delete", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/api/v1/rules/hot").await.status, 404);
    assert_eq!(b.get("/rules/hot").await.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_dry_run_shows_what_each_action_would_do() {
    let s = Server::start().await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.get("/rules/new").await.csrf();
    let draft = |payload: &'static str| {
        vec![
            ("sql", SQL),
            ("actions", REPUBLISH),
            ("source", "sample"),
            ("sample_topic", "devices/pump-1/telemetry"),
            ("sample_payload", payload),
        ]
    };
    // Without script: the editor again, with the results.
    let mut form = draft(r#"{"temperature": 35}"#);
    form.push(("csrf", &csrf));
    let r = b.post("/rules/test", &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"rule-sql\""), "the editor: {}", r.body);
    assert!(r.body.contains("badge on\">passed"), "{}", r.body);
    assert!(
        r.body.contains("<code>alerts&#x2f;pump-1</code>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("hot: 35"), "{}", r.body);

    // WHERE does not hold: nothing planned.
    let mut form = draft(r#"{"temperature": 20}"#);
    form.push(("csrf", &csrf));
    let r = b.post("/rules/test", &form).await;
    assert!(r.body.contains("WHERE did not hold"), "{}", r.body);
    assert!(!r.body.contains("alerts&#x2f;pump-1"), "{}", r.body);

    // A broken draft: the place of the SQL error, for the script's caret.
    let r = b
        .post(
            "/rules/test",
            &[
                ("sql", "SELECT * FROM 'devices/+/telemetry' WHERE"),
                ("actions", "[]"),
                ("source", "sample"),
                ("sample_topic", "devices/pump-1/telemetry"),
                ("sample_payload", "{}"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"rule-sql-error\""), "{}", r.body);
    assert!(r.body.contains("data-error-line=\"1\""), "{}", r.body);

    // Recent messages of a topic filter: none stored yet, said plainly.
    let r = b
        .post(
            "/rules/test",
            &[
                ("sql", SQL),
                ("actions", REPUBLISH),
                ("source", "recent"),
                ("recent_topic", "devices/+/telemetry"),
                ("recent_limit", "5"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("No stored messages"), "{}", r.body);
    let r = b
        .post(
            "/rules/test",
            &[
                ("sql", SQL),
                ("actions", "[]"),
                ("source", "recent"),
                ("recent_topic", "devices/+/telemetry"),
                ("recent_limit", "500"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("between 1 and 100"), "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn a_dry_run_of_recent_messages_reads_the_stored_telemetry() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let token = create_device(&admin, "pump-1").await;
    let r = s
        .api(&token)
        .post("/api/v1/ingest/telemetry", json!({"temperature": 41}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    // htmx asks for the results alone.
    let form = [
        ("sql", SQL),
        ("actions", REPUBLISH),
        ("source", "recent"),
        ("recent_topic", "devices/+/telemetry"),
        ("recent_limit", "5"),
        ("csrf", csrf.as_str()),
    ];
    let mut passed = String::new();
    for _ in 0..50 {
        let r = b.post_htmx("/rules/test", &form).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!r.body.contains("<html"), "a fragment: {}", r.body);
        if r.body.contains("hot: 41") {
            passed = r.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        passed.contains("<code>alerts&#x2f;pump-1</code>"),
        "{passed}"
    );
    s.stop().await;
}

#[tokio::test]
async fn viewers_read_rules_with_webhook_headers_hidden_and_cannot_change_them() {
    let s = Server::start().await;
    let admin = s.admin().await;
    viewer_editor_owner(&s, &admin).await;
    create_rule(
        &admin,
        "notify",
        "SELECT * FROM 'devices/+/telemetry'",
        json!([{"type": "webhook", "url": "https://example.com/in",
            "headers": {"Authorization": "Bearer s3cret"}}]),
    )
    .await;
    let mut editor = Browser::new(&s);
    let r = editor.login("e@x.io", USER_PASSWORD, "/rules").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = editor.get("/rules/notify").await;
    assert!(page.body.contains("Bearer s3cret"), "editors see it");

    let mut viewer = Browser::new(&s);
    let r = viewer.login("v@x.io", USER_PASSWORD, "/rules").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let list = viewer.get("/rules").await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("New rule"), "{}", list.body);
    let page = viewer.get("/rules/notify").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("s3cret"), "{}", page.body);
    assert!(page.body.contains("hidden: only editors"), "{}", page.body);
    assert!(page.body.contains("Definition (read only)"));
    assert!(!page.body.contains("Disable</button>"));
    assert!(!page.body.contains(">Save</button>"));
    let csrf = page.csrf();
    for (path, form) in [
        (
            "/rules",
            vec![("id", "v"), ("sql", SQL), ("csrf", csrf.as_str())],
        ),
        (
            "/rules/notify",
            vec![("sql", SQL), ("actions", "[]"), ("csrf", csrf.as_str())],
        ),
        ("/rules/notify/disable", vec![("csrf", csrf.as_str())]),
        ("/rules/notify/delete", vec![("csrf", csrf.as_str())]),
    ] {
        let r = viewer.post(path, &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    let rule = admin.get("/api/v1/rules/notify").await;
    assert_eq!(rule.json["version"], 1);
    assert_eq!(rule.json["enabled"], true);
    assert_eq!(admin.get("/api/v1/rules/v").await.status, 404);
    // A dry run changes nothing: viewers may try drafts.
    let r = viewer
        .post(
            "/rules/test",
            &[
                ("sql", SQL),
                ("actions", REPUBLISH),
                ("sample_topic", "devices/a/telemetry"),
                ("sample_payload", r#"{"temperature": 99}"#),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("hot: 99"), "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn forged_rule_posts_are_refused_and_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin().await;
    create_rule(&admin, "kept", SQL, json!([])).await;
    let mut b = Browser::admin(&s).await;
    let csrf = b.csrf().await;
    let r = b
        .post(
            "/rules",
            &[("id", "forged"), ("sql", SQL), ("csrf", "nope")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = b.post("/rules/kept/disable", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post_from(
            "/rules/kept/delete",
            &[("csrf", &csrf)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.get("/api/v1/rules/forged").await.status, 404);
    let kept = admin.get("/api/v1/rules/kept").await;
    assert_eq!(kept.json["enabled"], true);
    s.stop().await;
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_deleted() {
    let s = ServerBuilder::new()
        .env("FERRULE_RULES_WEBHOOK_ALLOW_PRIVATE", "true")
        .start()
        .await;
    let admin = s.admin().await;
    let token = create_device(&admin, "meter").await;
    let mut hook = Hook::start().await;
    hook.answer(500, Duration::ZERO);
    create_rule(
        &admin,
        "notify",
        "SELECT kwh FROM 'devices/+/telemetry'",
        json!([{"type": "webhook", "url": format!("{}/in", hook.url), "retries": 0}]),
    )
    .await;
    let r = s
        .api(&token)
        .post("/api/v1/ingest/telemetry", json!({"kwh": 7}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    hook.next(Duration::from_secs(5)).await.expect("a call");
    rule_until(&admin, "notify", "failed", |r| {
        r["stats"]["actions_failed"] == 1
    })
    .await;

    let mut b = Browser::admin(&s).await;
    let list = b.get("/rules").await;
    assert!(list.body.contains("500"), "the last error: {}", list.body);
    let mut page = b.get("/rules/notify").await;
    for _ in 0..50 {
        if page.body.contains("/dead-letters/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = b.get("/rules/notify").await;
    }
    let at = page
        .body
        .find("/rules/notify/dead-letters/")
        .expect("a letter");
    let rest = &page.body[at + "/rules/notify/dead-letters/".len()..];
    let letter = rest[..rest.find('/').unwrap()].to_owned();
    let csrf = page.csrf();

    // Still failing: said so, the letter kept.
    let r = b
        .post(
            &format!("/rules/notify/dead-letters/{letter}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("failed again"), "{}", r.body);
    hook.answer(200, Duration::ZERO);
    let r = b
        .post(
            &format!("/rules/notify/dead-letters/{letter}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert!(r.body.contains("was delivered"), "{}", r.body);
    assert!(r.body.contains("replayed"), "{}", r.body);

    let r = b
        .post(
            &format!("/rules/notify/dead-letters/{letter}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let letters = admin.get("/api/v1/rules/notify/dead-letters").await;
    assert_eq!(letters.json["items"].as_array().unwrap().len(), 0);
    s.stop().await;
}

/// The browser scenario: `tests/console/e2e-rules-dashboards.mjs`.
#[tokio::test]
async fn the_rules_and_dashboards_pages_work_in_a_real_browser() {
    crate::console_e2e::run_script("e2e-rules-dashboards.mjs").await;
}

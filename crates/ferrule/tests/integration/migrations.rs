//! The data directory's schema: created from empty, upgraded in place from an
//! older version, refused when newer than the binary.

use crate::mqtt_util::create_device;
use crate::util::{Server, ServerBuilder, stamp_newer_schema};

/// The admin password in `fixtures/meta-v1.sql`.
const FIXTURE_PASSWORD: &str = "67756c778c174db8d579d8ad";

fn schema_version(db: &std::path::Path) -> u32 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Stops the server; asserts that it left its data dir at the schema
/// version of this binary.
async fn assert_stops_at_the_current_schema(s: Server) {
    let (_dir, data) = s.stop_keep_dir().await;
    assert_eq!(
        schema_version(&data.join("meta.db")),
        ferrule_store::embedded::SCHEMA_VERSION
    );
}

#[tokio::test]
async fn a_new_data_dir_gets_the_current_schema() {
    let s = ServerBuilder::new().start().await;
    let admin = s.admin().await;
    create_device(&admin, "d1").await;
    assert_stops_at_the_current_schema(s).await;
}

#[tokio::test]
async fn an_older_data_dir_is_upgraded_in_place() {
    let b = ServerBuilder::new();
    let data = b.dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = include_str!("../fixtures/meta-v1.sql");
    rusqlite::Connection::open(data.join("meta.db"))
        .unwrap()
        .execute_batch(fixture)
        .unwrap();
    assert_eq!(schema_version(&data.join("meta.db")), 1);

    let s = b.random_admin_password().start().await;
    assert!(
        !s.stdout().contains("password"),
        "existing users: no new admin"
    );
    // Old users still log in, in their tenants.
    let token = s.login("admin@localhost", FIXTURE_PASSWORD).await;
    let admin = s.api(&token);
    let owner = s.api(&s.login("owner@acme.example", FIXTURE_PASSWORD).await);
    assert_eq!(owner.get("/api/v1/auth/me").await.json["tenant"], "acme");
    // And what the newer schema added works.
    create_device(&admin, "d1").await;
    assert_eq!(
        owner
            .post(
                "/api/v1/api-keys",
                serde_json::json!({"name": "ci", "role": "viewer"})
            )
            .await
            .status,
        201
    );
    assert_eq!(
        owner
            .post(
                "/api/v1/acl-rules",
                serde_json::json!({"effect": "deny", "action": "all", "topic": "#", "subject": "anonymous"})
            )
            .await
            .status,
        201
    );
    let tenants = admin.get("/api/v1/tenants").await;
    assert_eq!(tenants.json["items"].as_array().unwrap().len(), 2);
    assert_stops_at_the_current_schema(s).await;
}

#[tokio::test]
async fn a_newer_data_dir_is_refused() {
    let s = ServerBuilder::new().start().await;
    let (dir, data) = s.stop_keep_dir().await;
    let newer = stamp_newer_schema(&data);
    let db = data.join("meta.db");
    let before = std::fs::read(&db).unwrap();

    let out = ServerBuilder::new()
        .data_dir(data.clone())
        .run_to_exit()
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: data_dir"), "{last}");
    assert!(
        last.contains(&format!("schema version {newer}")) && last.contains("newer ferrule"),
        "{last}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "refusal must not touch the database"
    );
    drop(dir);
}

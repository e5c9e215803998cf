//! Safe upgrades: `ferrule check` as a preflight, the automatic backup
//! before a schema migration at `serve` start, and the refusal of data
//! from a newer release; `fixtures`: every released schema opens.

use std::path::Path;

use crate::backup::{ferrule, restore_into};
use crate::mqtt_util::create_device;
use crate::util::{Server, ServerBuilder};

mod fixtures;

/// The admin password in `fixtures/meta-v1.sql`.
const FIXTURE_PASSWORD: &str = "67756c778c174db8d579d8ad";

fn load_meta_v1(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    rusqlite::Connection::open(data.join("meta.db"))
        .unwrap()
        .execute_batch(include_str!("../fixtures/meta-v1.sql"))
        .unwrap();
}

async fn check(data: &Path) -> (Option<i32>, String) {
    let out = ferrule(&["check", "--data-dir", data.to_str().unwrap()], &[]).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn user_version(db: &Path) -> u32 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn check_passes_a_healthy_data_dir_even_while_a_server_runs() {
    let s = Server::start().await;
    create_device(&s.admin().await, "pump-1").await;
    let (code, text) = check(&s.data_dir).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("meta.db") && text.contains("current"),
        "{text}"
    );
    assert!(text.contains("quick_check: ok"), "{text}");
    assert!(text.contains("no migration needed"), "{text}");
    // The server was not disturbed.
    create_device(&s.admin().await, "pump-2").await;
    s.stop().await;
}

#[tokio::test]
async fn check_lists_the_migrations_an_old_data_dir_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    load_meta_v1(&data);
    let (code, text) = check(&data).await;
    assert_eq!(code, Some(0), "{text}");
    let current = ferrule_store::embedded::SCHEMA_VERSION;
    assert!(
        text.contains(&format!("schema 1, this binary {current}")),
        "{text}"
    );
    assert!(
        text.contains("will run    2: API keys, devices and device credentials"),
        "{text}"
    );
    assert!(text.contains("automatic backup"), "{text}");
    // Read-only: still version 1.
    assert_eq!(user_version(&data.join("meta.db")), 1);
}

#[tokio::test]
async fn check_fails_a_corrupted_database() {
    let s = Server::start().await;
    let admin = s.admin().await;
    for i in 0..200 {
        create_device(&admin, &format!("device-{i}")).await;
    }
    let (_dir, data) = s.stop_keep_dir().await;
    let db = data.join("meta.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 16 * 4096, "{} bytes", bytes.len());
    // Scribble over a few pages past the schema.
    for b in &mut bytes[8 * 4096..12 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let (code, text) = check(&data).await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("meta.db fails quick_check"), "{text}");
}

#[tokio::test]
async fn check_refuses_a_missing_data_dir_and_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = check(&dir.path().join("nothing")).await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("holds no Ferrule data"), "{text}");

    let data = dir.path().join("data");
    load_meta_v1(&data);
    crate::util::stamp_newer_schema(&data);
    let (code, text) = check(&data).await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("newer than this binary"), "{text}");
}

#[tokio::test]
async fn serve_backs_up_an_old_data_dir_before_migrating_it() {
    let b = ServerBuilder::new();
    let data = b.dir().join("data");
    load_meta_v1(&data);
    let s = b.random_admin_password().start().await;
    let logs = s.stderr();
    assert!(logs.contains("pre-migration backup written"), "{logs}");
    let parent = data.parent().unwrap();
    let backups: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("data.pre-migration-v1.0-") && name.ends_with(".ferrule-backup")
        })
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "{:?}",
        std::fs::read_dir(parent)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    // The server migrated and serves the old users.
    let token = s.login("admin@localhost", FIXTURE_PASSWORD).await;
    create_device(&s.api(&token), "d1").await;
    let (_keep, _) = s.stop_keep_dir().await;
    assert_eq!(
        user_version(&data.join("meta.db")),
        ferrule_store::embedded::SCHEMA_VERSION
    );

    // The automatic backup holds the data as it was, version 1.
    let restored = parent.join("restored");
    let out = restore_into(&backups[0], &restored).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(user_version(&restored.join("meta.db")), 1);
    let tenants: i64 = rusqlite::Connection::open(restored.join("meta.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tenants, 2);

    // A second start migrates nothing and backs up nothing.
    let s = ServerBuilder::new().data_dir(&data).start().await;
    assert!(!s.stderr().contains("pre-migration"), "{}", s.stderr());
    s.stop().await;
}

#[tokio::test]
async fn serve_refuses_telemetry_from_a_newer_release() {
    let s = Server::start().await;
    let (_dir, data) = s.stop_keep_dir().await;
    let db = data.join("telemetry.db");
    let newer = ferrule_store::telemetry::embedded::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let exited = ServerBuilder::new().data_dir(&data).run_to_exit().await;
    exited.assert_refused("data_dir", "newer Ferrule release");
    assert!(
        exited
            .stderr
            .contains(&format!("telemetry.db schema version {newer}")),
        "{}",
        exited.stderr
    );
    // Nothing was touched.
    assert_eq!(user_version(&db), newer);
}

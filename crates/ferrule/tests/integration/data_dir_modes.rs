//! The data directory holds every secret's hash and every tenant's data: it
//! is created 0700 and its files 0600, and an existing one is tightened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::mqtt_util::create_device;
use crate::telemetry_util::ingest_ok;
use crate::util::ServerBuilder;

/// Every entry under `dir` whose mode is not 0700 (directories) or 0600
/// (files), with its mode; and how many files were seen.
fn loose_entries(dir: &Path) -> (Vec<String>, usize) {
    let mut loose = Vec::new();
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        if mode != 0o700 {
            loose.push(format!("{} {mode:o}", d.display()));
        }
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                if mode != 0o600 {
                    loose.push(format!("{} {mode:o}", path.display()));
                }
            }
        }
    }
    (loose, files)
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn the_data_dir_is_private_to_the_server() {
    let s = ServerBuilder::new().start().await;
    let admin = s.admin().await;
    let token = create_device(&admin, "pump").await;
    ingest_ok(&s, &token, br#"{"t": 1}"#).await;
    assert_eq!(
        admin
            .post(
                "/api/v1/acl-rules",
                json!({"effect": "deny", "action": "all", "topic": "x/#", "subject": "anonymous"})
            )
            .await
            .status,
        201
    );
    let present = names(&s.data_dir);
    assert!(
        present.iter().any(|n| n.ends_with("-wal")) && present.iter().any(|n| n.ends_with("-shm")),
        "SQLite's WAL files are there while running: {present:?}"
    );
    let (loose, files) = loose_entries(&s.data_dir);
    assert!(files >= 4, "{present:?}");
    assert!(loose.is_empty(), "after writes: {loose:?}");

    // An existing data dir made by something else is tightened at start.
    let (dir, data) = s.stop_keep_dir().await;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = ServerBuilder::new().data_dir(data.clone()).start().await;
    let admin = s.admin().await;
    ingest_ok(&s, &token, br#"{"t": 2}"#).await;
    assert_eq!(
        admin
            .post("/api/v1/devices", json!({"id": "d2"}))
            .await
            .status,
        201
    );
    let (loose, _) = loose_entries(&data);
    assert!(loose.is_empty(), "after a restart: {loose:?}");
    s.stop().await;
    drop(dir);
}

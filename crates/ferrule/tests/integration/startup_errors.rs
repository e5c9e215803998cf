//! Each start-up error: one line naming the setting and the fix, exit code 2,
//! nothing written.

use crate::util::{Exited, ServerBuilder};

/// The run failed the way a user must see it fail.
fn assert_clean_failure(out: &Exited, setting: &str, hint: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    let lines: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{}", out.stderr);
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains(setting), "{line} should name {setting}");
    assert!(line.contains(hint), "{line} should say {hint}");
    assert!(!out.stdout.contains("ready"), "{}", out.stdout);
    // Nothing written: the temp dir holds only what the test put there.
    let left: Vec<_> = std::fs::read_dir(out.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "ferrule.toml" && n != "occupied" && n != "not-a-dir")
        .collect();
    assert!(
        left.is_empty(),
        "start-up error left files behind: {left:?}"
    );
}

#[tokio::test]
async fn port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ServerBuilder::new()
        .arg("--http-listen")
        .arg(&addr)
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "http.listen", "already in use");
}

#[tokio::test]
async fn bad_listen_address() {
    let out = ServerBuilder::new()
        .arg("--http-listen")
        .arg("localhost:eighty")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "http.listen", "HOST:PORT");
    let out = ServerBuilder::new()
        .env("FERRULE_MQTT_LISTEN", "1883")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "mqtt.listen", "HOST:PORT");
    let out = ServerBuilder::new().env("PORT", "http").run_to_exit().await;
    assert_clean_failure(&out, "PORT", "1-65535");
}

#[tokio::test]
async fn unreadable_cert() {
    let b = ServerBuilder::new();
    let missing = b.dir().join("missing.pem");
    let out = b
        .arg("--tls-cert")
        .arg(missing.to_str().unwrap())
        .arg("--tls-key")
        .arg(missing.to_str().unwrap())
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "tls.cert", "readable PEM");

    let b = ServerBuilder::new();
    let garbage = b.dir().join("occupied");
    std::fs::write(&garbage, "this is not PEM").unwrap();
    let out = b
        .arg("--tls-cert")
        .arg(garbage.to_str().unwrap())
        .arg("--tls-key")
        .arg(garbage.to_str().unwrap())
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "tls.cert", "PEM");

    let out = ServerBuilder::new()
        .arg("--tls-cert")
        .arg("c.pem")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "tls.key", "--tls-key");
}

#[tokio::test]
async fn unwritable_data_dir() {
    let b = ServerBuilder::new();
    let file = b.dir().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = b.data_dir(file.join("data")).run_to_exit().await;
    assert_clean_failure(&out, "data_dir", "writable directory");
}

#[tokio::test]
async fn bad_storage_url() {
    let out = ServerBuilder::new()
        .arg("--storage")
        .arg("mysql://localhost/x")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "storage", "postgres://");
    let out = ServerBuilder::new()
        .env("FERRULE_NATS", "localhost:4222")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "nats", "nats://");
}

#[tokio::test]
async fn bad_config_file() {
    let out = ServerBuilder::new()
        .config_file("[http]\nlisen = \"0.0.0.0:1\"\n")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "configuration", "lisen");
    let out = ServerBuilder::new()
        .config_file("data_dir = [")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "configuration", "ferrule.toml");
    let out = ServerBuilder::new()
        .arg("--config")
        .arg("nowhere.toml")
        .run_to_exit()
        .await;
    assert_clean_failure(&out, "--config", "does not exist");
}

#[tokio::test]
async fn data_dir_in_use_by_another_server() {
    let first = crate::util::Server::start().await;
    let out = ServerBuilder::new()
        .data_dir(first.data_dir.clone())
        .run_to_exit()
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("in use by another ferrule"),
        "{}",
        out.stderr
    );
    // The first server is unharmed.
    first.admin().await.get("/api/v1/devices").await;
    assert!(first.stop().await.success());
}

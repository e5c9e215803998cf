//! The console in a real browser: `tests/console/e2e.mjs` (Playwright with
//! Debian's chromium, axe-core) against a real server, with a real MQTT
//! client (`mosquitto_pub`) publishing the telemetry it waits for.
//!
//! Without chromium or the test's node_modules the test says why and
//! passes — except under `CI=true`, where it fails: CI installs both
//! (`.ci/run`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{ADMIN_EMAIL, Server};

const CHROMIUM: &str = "/usr/bin/chromium";

fn test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

/// What is missing to run the browser test, if anything.
fn missing() -> Option<String> {
    let chromium = std::env::var("FERRULE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if !test_dir().join("node_modules/playwright-core").exists()
        || !test_dir().join("node_modules/axe-core").exists()
    {
        return Some(format!(
            "no node_modules in {} (run `npm ci` there)",
            test_dir().display()
        ));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("no node on PATH".into());
    }
    if std::process::Command::new("mosquitto_pub")
        .arg("--help")
        .output()
        .is_err()
    {
        return Some("no mosquitto_pub on PATH (apt-get install mosquitto-clients)".into());
    }
    None
}

fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FERRULE_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}

#[tokio::test]
async fn the_console_works_end_to_end_in_a_real_browser() {
    run_script("e2e.mjs").await;
}

/// Runs one script of `tests/console/` against a server of its own
/// (scripts share `lib.mjs`); fails with its output when it fails.
pub async fn run_script(script: &str) {
    if let Some(why) = missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the console's browser test cannot run under CI: {why}");
        }
        eprintln!("skipping the console's browser test: {why}");
        return;
    }
    let s = Server::start().await;
    let (mqtt_host, mqtt_port) = s.mqtt.rsplit_once(':').unwrap();
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let run = tokio::process::Command::new("node")
        .arg(test_dir().join(script))
        .current_dir(test_dir())
        .env("FERRULE_URL", &s.http)
        .env("FERRULE_MQTT_HOST", mqtt_host)
        .env("FERRULE_MQTT_PORT", mqtt_port)
        .env("FERRULE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("FERRULE_ADMIN_PASSWORD", s.admin_password.clone().unwrap())
        .env("FERRULE_SCREENSHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        out.status,
        s.stderr()
    );
    println!("{stdout}");
    s.stop().await;
}

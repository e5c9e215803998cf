//! Telemetry settings at start-up: a bad value stops the server with one
//! line naming the setting (exit 2, nothing written); `durability = "none"`
//! acknowledges without waiting for the disk and still keeps everything
//! through a graceful restart.

use std::time::Duration;

use ferrule_mqtt::codec::ReasonCode;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::mqtt_util::{Raw, V5, World};
use crate::telemetry_util::{ingest_ok, now_ms, publish1_ack, restart};
use crate::util::{Exited, ServerBuilder};

/// One `error:` line naming `setting` and saying `hint`; exit code 2;
/// nothing left in the working directory but the config file.
fn assert_refused_at_start(out: &Exited, setting: &str, hint: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(
        lines[0].contains(setting),
        "{} should name {setting}",
        lines[0]
    );
    assert!(lines[0].contains(hint), "{} should say {hint}", lines[0]);
    let left: Vec<String> = std::fs::read_dir(out.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "ferrule.toml")
        .collect();
    assert!(
        left.is_empty(),
        "start-up error left files behind: {left:?}"
    );
}

#[tokio::test]
async fn a_bad_durability_stops_start_up() {
    let out = ServerBuilder::new()
        .env("FERRULE_TELEMETRY_DURABILITY", "fast")
        .run_to_exit()
        .await;
    assert_refused_at_start(&out, "telemetry.durability", "\"sync\" or \"none\"");
    assert!(
        out.stderr.contains("FERRULE_TELEMETRY_DURABILITY"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fast"), "{}", out.stderr);
    let out = ServerBuilder::new()
        .config_file("[telemetry]\ndurability = \"fsync\"\n")
        .run_to_exit()
        .await;
    assert_refused_at_start(&out, "telemetry.durability", "\"sync\" or \"none\"");
}

#[tokio::test]
async fn other_bad_telemetry_settings_stop_start_up() {
    for (env, value, setting) in [
        (
            "FERRULE_TELEMETRY_MAX_FUTURE_SKEW",
            "soon",
            "telemetry.max_future_skew",
        ),
        (
            "FERRULE_TELEMETRY_RETENTION_INTERVAL",
            "0s",
            "telemetry.retention_interval",
        ),
        ("FERRULE_TELEMETRY_SEAL_AGE", "-5m", "telemetry.seal_age"),
        (
            "FERRULE_TELEMETRY_PURGE_INTERVAL",
            "often",
            "telemetry.purge_interval",
        ),
    ] {
        let out = ServerBuilder::new().env(env, value).run_to_exit().await;
        assert_refused_at_start(&out, setting, "is not a duration");
    }
    let out = ServerBuilder::new()
        .config_file("[telemetry]\nretention = 3\n")
        .run_to_exit()
        .await;
    assert_refused_at_start(&out, "configuration", "retention");
}

#[tokio::test]
async fn durability_none_acknowledges_at_once_and_keeps_data_through_a_graceful_restart() {
    let builder = || ServerBuilder::new().env("FERRULE_TELEMETRY_DURABILITY", "none");
    let w = World::with(builder()).await;
    let t0 = now_ms() - 60_000;
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump", &w.pump, None).await;
    for i in 0..50u16 {
        let payload = json!({"ts": t0 + i64::from(i), "values": {"n": i}}).to_string();
        let ack = publish1_ack(
            &mut dev,
            i + 1,
            "devices/pump/telemetry",
            payload.as_bytes(),
        )
        .await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }
    for i in 50..60 {
        ingest_ok(
            &w.s,
            &w.pump,
            json!({"ts": t0 + i, "values": {"n": i}}).to_string(),
        )
        .await;
    }
    let want: Vec<Value> = (0..60).map(|i| json!({"ts": t0 + i, "value": i})).collect();
    // Acknowledged before it is written: visible shortly after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = w
            .admin
            .get("/api/v1/devices/pump/telemetry?keys=n")
            .await
            .json;
        if got["n"] == json!(want) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored: {got}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(dev);
    let token = w.admin.token.clone().unwrap();
    let (s, dir) = restart(w.s, Signal::SIGTERM, builder()).await;
    let got = s
        .api(&token)
        .get("/api/v1/devices/pump/telemetry?keys=n")
        .await
        .json;
    assert_eq!(got["n"], json!(want), "after a graceful restart");
    s.stop().await;
    drop(dir);
}

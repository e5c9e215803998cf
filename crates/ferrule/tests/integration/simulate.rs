//! `ferrule simulate` against a real server, as a user runs it: the
//! simulated devices' messages are all acknowledged and stored, they
//! answer commands sent through the API, take on desired state, stop
//! cleanly on Ctrl-C, and bad arguments are refused with the fix.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Server, ServerBuilder, ferrule_bin};

/// `ferrule simulate` hands over to `ferrule-bench` beside `ferrule`.
/// `cargo test --workspace` (the README's test command) builds that binary
/// for ferrule-bench's own CLI test; it is brought up to date here once per
/// run all the same, so a narrower run (`-p ferrule`) never meets a stale
/// or missing simulator. The same package selection as the README's
/// command resolves the same features, so after it this is a no-op, where a
/// `cargo build -p ferrule-bench` would rebuild half the workspace with a
/// narrower feature set.
fn simulator() -> &'static Path {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        let ferrule = PathBuf::from(ferrule_bin());
        // target/<profile>/ferrule → the target dir and the profile.
        let profile_dir = ferrule.parent().expect("profile dir");
        let target = profile_dir.parent().expect("target dir");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo
            .args(["test", "--quiet", "--workspace", "--no-run"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo test --no-run");
        assert!(status.success(), "building ferrule-bench: {status}");
        assert!(ferrule.with_file_name("ferrule-bench").exists());
        ferrule
    })
}

/// `ferrule simulate ARGS` against `server`, logged in as its admin
/// through the environment, with a JSON summary.
fn simulate(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(simulator());
    cmd.arg("simulate")
        .args(["--server", &server.http, "--mqtt", &server.mqtt, "--json"])
        .args(args)
        .env_remove("FERRULE_TOKEN")
        .env("FERRULE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("FERRULE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The summary: the last line of stdout, as JSON.
fn summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "no JSON summary; stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

async fn finish(cmd: &mut Command, within: Duration) -> Output {
    tokio::time::timeout(within, cmd.output())
        .await
        .expect("ferrule simulate finished in time")
        .expect("running ferrule simulate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_devices_at_ten_messages_a_second_for_30_s_all_acknowledged_and_stored() {
    let server = Server::start().await;
    let started = Instant::now();
    let out = finish(
        simulate(
            &server,
            &[
                "--devices",
                "1000",
                "--rate",
                "10",
                "--duration",
                "30s",
                "--seed",
                "42",
            ],
        )
        .stdout(Stdio::piped()),
        Duration::from_secs(300),
    )
    .await;
    let s = summary(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{s:#}\n{stderr}");
    assert_eq!(s["ok"], true, "{s:#}");
    assert_eq!(s["devices"], 1000);
    // 1,000 devices × 10 readings/s × 30 s, every one acknowledged.
    assert_eq!(s["published"]["telemetry"]["sent"], 300_000, "{s:#}");
    assert_eq!(s["published"]["telemetry"]["acked"], 300_000, "{s:#}");
    assert_eq!(s["unacknowledged"], 0, "{s:#}");
    assert_eq!(s["errors"]["total"], 0, "{s:#}");
    assert_eq!(s["refused"], json!({}));
    assert_eq!(s["discarded"], 0);
    // Every device reported its state at least once.
    assert!(s["published"]["reported_state"]["acked"].as_u64().unwrap() >= 1000);
    assert!(s["connects"].as_u64().unwrap() >= 1000, "{s:#}");
    // Not a single burst: the run took the 30 s it was asked for.
    assert!(s["elapsed_s"].as_f64().unwrap() >= 30.0, "{s:#}");
    // Not a TTY: plain progress lines with the live figures.
    assert!(
        stderr.contains("msgs/s") && stderr.contains("connected"),
        "{stderr}"
    );

    // The server has stored every reading: 300 temperatures per device.
    let admin = server.admin().await;
    let counts = admin
        .get("/api/v1/telemetry?key=temperature&agg=count&from=0")
        .await;
    assert_eq!(counts.status, 200, "{}", counts.text);
    let per_device = counts.json.as_object().unwrap();
    assert_eq!(per_device.len(), 1000);
    let total: f64 = per_device
        .values()
        .map(|points| points[0]["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total, 300_000.0);
    assert!(
        per_device
            .values()
            .all(|p| p[0]["value"].as_f64() == Some(300.0)),
        "a device with a reading missing or doubled"
    );
    // Alerts are stored as events of the devices that raised them.
    let events_acked = s["published"]["events"]["acked"].as_u64().unwrap();
    let metrics = admin.get("/metrics").await.text;
    let stored = metric(&metrics, "ferrule_telemetry_events_stored_total");
    assert!(stored >= events_acked as f64, "{stored} < {events_acked}");
    eprintln!(
        "simulate 1000 × 10/s × 30 s: {:.1} s, {events_acked} events",
        started.elapsed().as_secs_f64()
    );
}

/// The sum of a Prometheus counter's series.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn simulated_devices_answer_commands_take_desired_state_and_stop_on_ctrl_c() {
    let server = Server::start().await;
    let admin = server.admin().await;
    // An editor's API key, given through FERRULE_TOKEN.
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "sim", "role": "editor"}))
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let secret = key.json["secret"].as_str().unwrap().to_owned();
    let child: Child = simulate(&server, &["--devices", "3", "--rate", "2"])
        .env_remove("FERRULE_ADMIN_PASSWORD")
        .env("FERRULE_TOKEN", &secret)
        .spawn()
        .unwrap();

    wait_for("sim-0001 online", async || {
        admin.get("/api/v1/devices/sim-0001").await.json["online"] == true
    })
    .await;
    let reboot = admin
        .post(
            "/api/v1/devices/sim-0001/commands/reboot?timeout=10",
            json!({"delay": 0}),
        )
        .await;
    assert_eq!(reboot.status, 200, "{}", reboot.text);
    assert_eq!(reboot.json["state"], "succeeded", "{}", reboot.text);
    assert_eq!(reboot.json["response"]["rebooted"], true, "{}", reboot.text);
    let unknown = admin
        .post(
            "/api/v1/devices/sim-0002/commands/self-destruct?timeout=10",
            json!({}),
        )
        .await;
    assert_eq!(unknown.json["state"], "failed", "{}", unknown.text);
    assert!(
        unknown.text.contains("unknown command"),
        "the reason comes back: {}",
        unknown.text
    );
    // A desired interval is taken on and reported back.
    let patch = admin
        .patch(
            "/api/v1/devices/sim-0003/state",
            json!({"desired": {"interval_ms": 250}}),
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.text);
    wait_for("sim-0003 reports its new interval", async || {
        let twin = admin.get("/api/v1/devices/sim-0003/state").await.json;
        twin["reported"]["interval_ms"] == 250 && twin["reported"]["firmware"].is_string()
    })
    .await;
    // Telemetry is arriving, with the sensor keys.
    wait_for("sim-0002's readings", async || {
        let latest = admin.get("/api/v1/devices/sim-0002/telemetry/latest").await;
        ["temperature", "humidity", "battery", "door_open"]
            .iter()
            .all(|key| latest.json[key]["value"] != Value::Null)
    })
    .await;
    let latest = admin
        .get("/api/v1/devices/sim-0002/telemetry/latest")
        .await
        .json;
    let temperature = latest["temperature"]["value"].as_f64().unwrap();
    assert!((15.0..28.0).contains(&temperature), "{latest}");
    assert!(latest["door_open"]["value"].is_boolean(), "{latest}");

    // Ctrl-C: the run stops, what was sent is acknowledged, the summary
    // counts the commands.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stopped within 20 s of Ctrl-C")
        .unwrap();
    let s = summary(&out);
    assert!(out.status.success(), "{s:#}");
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["unacknowledged"], 0, "{s:#}");
    assert_eq!(
        s["commands"],
        json!({"received": 2, "succeeded": 1, "failed": 1})
    );
    assert!(s["desired_changes"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(s["published"]["command_replies"]["acked"] == 2, "{s:#}");

    // A second run reuses the devices with new tokens of their own.
    let out = finish(
        &mut simulate(
            &server,
            &["--devices", "3", "--rate", "5", "--duration", "1s"],
        ),
        Duration::from_secs(60),
    )
    .await;
    let s = summary(&out);
    assert!(out.status.success(), "{s:#}");
    // 5 readings/s for 1 s, except sim-0003, which takes on its desired
    // 250 ms interval again (the delta is retained): 5 + 5 + 4.
    assert_eq!(s["published"]["telemetry"]["acked"], 14, "{s:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0 created, 3 reused"), "{stderr}");
    let creds = admin.get("/api/v1/devices/sim-0001/credentials").await;
    assert_eq!(creds.json.as_array().unwrap().len(), 2, "{}", creds.text);
}

#[tokio::test]
async fn bad_simulate_arguments_and_settings_are_refused_with_the_fix() {
    let server = ServerBuilder::new().start().await;
    for (args, says) in [
        (&["--devices", "0"][..], "--devices"),
        (&["--rate", "fast"], "messages per second"),
        (&["--duration", "soon"], "such as 30s"),
        (&["--prefix", "a/b"], "cannot start a device id"),
        (&["--server", "localhost:8080"], "http://127.0.0.1:8080"),
    ] {
        let out = finish(&mut simulate(&server, args), Duration::from_secs(30)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // No credentials at all.
    let out = finish(
        simulate(&server, &[]).env_remove("FERRULE_ADMIN_PASSWORD"),
        Duration::from_secs(30),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("FERRULE_TOKEN"), "{stderr}");
    // A wrong password, a revoked-looking token, a server that is not there.
    let out = finish(
        simulate(&server, &[]).env("FERRULE_ADMIN_PASSWORD", "wrong-password"),
        Duration::from_secs(30),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("FERRULE_ADMIN_PASSWORD"), "{stderr}");
    let out = finish(
        &mut simulate(&server, &["--token", "fk_not-a-key"]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("--token"),
        "{stderr}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = finish(
        &mut simulate(&server, &["--server", &format!("http://127.0.0.1:{port}")]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach Ferrule"), "{stderr}");
    // A viewer may not create devices: the reason, and no devices.
    let admin = server.admin().await;
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "v", "role": "viewer"}))
        .await;
    let secret = key.json["secret"].as_str().unwrap();
    let out = finish(
        &mut simulate(&server, &["--token", secret]),
        Duration::from_secs(30),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("403") && stderr.contains("editor"),
        "{stderr}"
    );
}

//! Retention and the disk budget (SPEC "HTTP", telemetry settings): what
//! has expired is deleted — exactly that, per device profile, tenant and
//! server defaults, in memory and in sealed chunks — and stays deleted
//! across restarts; a tenant over its budget is refused, over MQTT and
//! HTTP, with gauges that warn first.

use ferrule_mqtt::codec::ReasonCode;
use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_util::{Raw, V3, V5, World, create_device};
use crate::telemetry_util::{
    DAY_MS, all_points, create_device_in_profile, ingest, ingest_event, ingest_ok, metric, now_ms,
    publish1_ack, reason_string, refused_total, restart, sealing_quickly, user_api, wait_sealed,
};
use crate::util::{Api, ServerBuilder, tenant_with_owner};

/// Ages of the points each device sends: 5 d, 4 d, 2 d, 12 h, 1 min.
const AGES: [i64; 5] = [5 * DAY_MS, 4 * DAY_MS, 2 * DAY_MS, DAY_MS / 2, 60_000];

/// Point `i`'s readings: `t` = i, `h` = 10·i + 0.5.
fn reading(now: i64, i: usize) -> String {
    json!({"ts": now - AGES[i], "values": {"t": i, "h": i as f64 * 10.0 + 0.5}}).to_string()
}

fn payload(now: i64, which: &[usize]) -> String {
    let objs: Vec<String> = which.iter().map(|i| reading(now, *i)).collect();
    format!("[{}]", objs.join(","))
}

/// Asserts a device holds exactly the points `kept` (indices into AGES).
async fn assert_kept(api: &Api, device: &str, now: i64, kept: &[usize], when: &str) {
    let t: Vec<(i64, Value)> = kept.iter().map(|i| (now - AGES[*i], json!(i))).collect();
    let h: Vec<(i64, Value)> = kept
        .iter()
        .map(|i| (now - AGES[*i], json!(*i as f64 * 10.0 + 0.5)))
        .collect();
    assert_eq!(all_points(api, device, "t").await, t, "{device} t {when}");
    assert_eq!(all_points(api, device, "h").await, h, "{device} h {when}");
}

async fn settings(api: &Api) -> Value {
    let r = api.get("/api/v1/telemetry/settings").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

async fn put_settings(api: &Api, body: Value) -> crate::util::Resp {
    api.send(Method::PUT, "/api/v1/telemetry/settings", Some(body))
        .await
}

async fn run_retention(api: &Api) -> Value {
    let r = api
        .send(Method::POST, "/api/v1/telemetry/retention/run", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

async fn event_count(api: &Api, device: &str) -> usize {
    let r = api.get(&format!("/api/v1/devices/{device}/events")).await;
    r.json["items"].as_array().expect("items").len()
}

#[tokio::test]
async fn retention_removes_exactly_the_expired_points_and_they_stay_removed() {
    let w = World::with(sealing_quickly()).await;
    let owner = user_api(&w.s, &w.admin, "owner@example.com", "owner").await;
    let brief = create_device_in_profile(&w.admin, "brief", "short").await;
    let plain = create_device(&w.admin, "plain").await;
    let r = put_settings(
        &owner,
        json!({"retention_days": 3, "profiles": {"short": 1}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["retention_days"], 3);
    assert_eq!(r.json["profiles"], json!({"short": 1}));
    assert_eq!(r.json["disk_budget_bytes"], Value::Null);
    assert_eq!(r.json["server_retention_days"], Value::Null);
    assert_eq!(settings(&owner).await["profiles"], json!({"short": 1}));

    // Each device: 5 d, 2 d and 12 h old points sealed into chunks, then
    // 4 d and 1 min old ones in memory — so the cut runs through both.
    let now = now_ms();
    for token in [&brief, &plain] {
        ingest_ok(&w.s, token, payload(now, &[0, 2, 3])).await;
    }
    wait_sealed(&w.s, 4.0).await;
    for token in [&brief, &plain] {
        ingest_ok(&w.s, token, payload(now, &[1, 4])).await;
        assert_eq!(ingest_event(&w.s, token, "boot", b"{}").await.status, 204);
    }
    assert_kept(&owner, "brief", now, &[0, 1, 2, 3, 4], "before").await;

    // brief (profile short: 1 day) loses 5 d, 4 d, 2 d; plain (tenant: 3
    // days) loses 5 d and 4 d; two keys each. Today's events stay.
    assert_eq!(
        run_retention(&owner).await,
        json!({"points": 10, "events": 0})
    );
    assert_kept(&owner, "brief", now, &[3, 4], "after retention").await;
    assert_kept(&owner, "plain", now, &[2, 3, 4], "after retention").await;
    assert_eq!(
        run_retention(&owner).await,
        json!({"points": 0, "events": 0})
    );

    // A late point already past the horizon is acknowledged but not kept.
    let expired = metric(&w.s, "ferrule_telemetry_points_expired_total").await;
    ingest_ok(
        &w.s,
        &brief,
        json!({"ts": now - 6 * DAY_MS, "values": {"t": 99}}).to_string(),
    )
    .await;
    assert_eq!(
        metric(&w.s, "ferrule_telemetry_points_expired_total").await,
        expired + 1.0
    );
    assert_kept(&owner, "brief", now, &[3, 4], "after a late point").await;

    // Killed, then stopped: nothing comes back.
    let (s, dir1) = restart(w.s, Signal::SIGKILL, sealing_quickly()).await;
    let owner = s.api(&s.login("owner@example.com", "owner-password-123").await);
    assert_kept(&owner, "brief", now, &[3, 4], "after kill -9").await;
    assert_kept(&owner, "plain", now, &[2, 3, 4], "after kill -9").await;
    assert_eq!(event_count(&owner, "brief").await, 1);
    assert_eq!(event_count(&owner, "plain").await, 1);
    let (s2, dir2) = restart(s, Signal::SIGTERM, sealing_quickly()).await;
    let owner = s2.api(&s2.login("owner@example.com", "owner-password-123").await);
    assert_kept(&owner, "brief", now, &[3, 4], "after SIGTERM").await;
    assert_kept(&owner, "plain", now, &[2, 3, 4], "after SIGTERM").await;
    assert_eq!(event_count(&owner, "brief").await, 1);
    assert_eq!(
        settings(&owner).await["profiles"],
        json!({"short": 1}),
        "settings survive too"
    );
    assert_eq!(
        run_retention(&owner).await,
        json!({"points": 0, "events": 0})
    );
    s2.stop().await;
    drop((dir1, dir2));
}

#[tokio::test]
async fn the_server_default_applies_in_the_background() {
    // telemetry.retention_days = 2, applied every second without a request;
    // a profile's own days win over it.
    let w = World::with(
        ServerBuilder::new()
            .env("FERRULE_TELEMETRY_RETENTION_DAYS", "2")
            .env("FERRULE_TELEMETRY_RETENTION_INTERVAL", "1s"),
    )
    .await;
    let owner = user_api(&w.s, &w.admin, "owner@example.com", "owner").await;
    let s = settings(&owner).await;
    assert_eq!(
        (
            s["server_retention_days"].clone(),
            s["retention_days"].clone()
        ),
        (json!(2), Value::Null)
    );
    let long = create_device_in_profile(&w.admin, "archive", "long").await;
    let r = put_settings(&owner, json!({"profiles": {"long": 10}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let now = now_ms();
    // Points 4 d (index 1) and 12 h (index 3) old.
    ingest_ok(&w.s, &w.pump, payload(now, &[1, 3])).await;
    ingest_ok(&w.s, &long, payload(now, &[1, 3])).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while all_points(&owner, "pump", "t").await.len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background pass did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_kept(&owner, "pump", now, &[3], "after the background pass").await;
    assert_kept(&owner, "archive", now, &[1, 3], "profile long: 10 days").await;
    w.s.stop().await;
}

#[tokio::test]
async fn settings_need_the_owner_and_valid_values_and_are_per_tenant() {
    let w = World::start().await;
    let owner = user_api(&w.s, &w.admin, "owner@example.com", "owner").await;
    let editor = user_api(&w.s, &w.admin, "editor@example.com", "editor").await;
    let viewer = user_api(&w.s, &w.admin, "viewer@example.com", "viewer").await;
    for (who, api) in [("editor", &editor), ("viewer", &viewer)] {
        assert_eq!(settings(api).await["retention_days"], Value::Null, "{who}");
        put_settings(api, json!({"retention_days": 1}))
            .await
            .assert_problem(403);
        api.send(Method::POST, "/api/v1/telemetry/retention/run", None)
            .await
            .assert_problem(403);
    }
    for (body, field) in [
        (json!({"retention_days": 0}), Some("retention_days")),
        (json!({"retention_days": 36_501}), Some("retention_days")),
        (json!({"retention_days": -1}), Some("retention_days")),
        (json!({"profiles": {"x": 0}}), Some("profiles.x")),
        (json!({"profiles": {"": 3}}), Some("profiles")),
        (json!({"profiles": [1]}), Some("profiles")),
        (
            json!({"disk_budget_bytes": "lots"}),
            Some("disk_budget_bytes"),
        ),
        (json!({"retention": 3}), None),
    ] {
        let r = put_settings(&owner, body.clone()).await;
        r.assert_problem(400);
        if let Some(field) = field {
            assert_eq!(r.json["field"], field, "{body}: {}", r.text);
        }
    }
    assert_eq!(
        settings(&owner).await["retention_days"],
        Value::Null,
        "nothing changed"
    );
    // A PUT replaces the settings whole.
    let r = put_settings(
        &owner,
        json!({"retention_days": 3, "profiles": {"a": 1}, "disk_budget_bytes": 1_000_000}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["disk_budget_bytes"], 1_000_000);
    let r = put_settings(&owner, json!({"retention_days": 4})).await;
    assert_eq!(
        (
            r.json["retention_days"].clone(),
            r.json["profiles"].clone(),
            r.json["disk_budget_bytes"].clone()
        ),
        (json!(4), json!({}), Value::Null)
    );

    // Per tenant: beta's settings and retention runs touch only beta.
    let now = now_ms();
    ingest_ok(&w.s, &w.pump, payload(now, &[0, 4])).await;
    let beta = tenant_with_owner(&w.s, &w.admin, "beta").await;
    assert_eq!(settings(&beta).await["retention_days"], Value::Null);
    let r = put_settings(&beta, json!({"retention_days": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        run_retention(&beta).await,
        json!({"points": 0, "events": 0})
    );
    assert_kept(&owner, "pump", now, &[0, 4], "after beta's run").await;
    assert_eq!(settings(&owner).await["retention_days"], 4);
    assert_eq!(
        run_retention(&owner).await,
        json!({"points": 2, "events": 0})
    );
    assert_kept(&owner, "pump", now, &[4], "after the owner's run").await;
    w.s.stop().await;
}

#[tokio::test]
async fn a_tenant_over_its_disk_budget_is_refused() {
    let w = World::start().await;
    let owner = user_api(&w.s, &w.admin, "owner@example.com", "owner").await;
    let budget = 16_000u64;
    let r = put_settings(&owner, json!({"disk_budget_bytes": budget})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let gauge = |name: &str| format!("ferrule_telemetry_tenant_{name}{{tenant=\"default\"}}");
    let disk_bytes = |j: &Value| j["disk_bytes"].as_u64().expect("disk_bytes");

    // Payloads of 100 points, until the budget is used up.
    let t0 = now_ms() - 3_600_000;
    let mut accepted = 0;
    let mut warned = false;
    let refusal = loop {
        assert!(accepted < 100, "never refused");
        let used = disk_bytes(&settings(&owner).await);
        let points: Vec<String> = (0..100)
            .map(|j| json!({"ts": t0 + accepted * 100 + j, "values": {"x": j}}).to_string())
            .collect();
        let r = ingest(&w.s, &w.pump, format!("[{}]", points.join(","))).await;
        if used >= budget {
            break r;
        }
        assert_eq!(r.status, 204, "{used} of {budget} bytes used: {}", r.text);
        accepted += 1;
        let used = disk_bytes(&settings(&owner).await);
        assert_eq!(metric(&w.s, &gauge("bytes")).await, used as f64);
        let warning = used as f64 >= 0.8 * budget as f64;
        assert_eq!(
            metric(&w.s, &gauge("budget_warning")).await,
            f64::from(u8::from(warning)),
            "{used} of {budget}"
        );
        warned |= warning && used < budget;
    };
    assert!(warned, "the warning came before the refusal");
    refusal.assert_problem(507);
    assert!(
        refusal.json["detail"].as_str().unwrap().contains("budget"),
        "{}",
        refusal.text
    );
    let stored = all_points(&owner, "pump", "x").await.len();
    assert_eq!(stored, accepted as usize * 100);

    // Everything else the tenant sends is refused too, and counted.
    let quota = refused_total(&w.s, "quota_exceeded").await;
    let r = ingest_event(&w.s, &w.pump, "boot", b"{}").await;
    r.assert_problem(507);
    let late = json!({"ts": t0 - 1, "values": {"x": -1}}).to_string();
    let mut dev = Raw::login(&w.s.mqtt, V5, "pump5", &w.pump, None).await;
    let ack = publish1_ack(&mut dev, 1, "devices/pump/telemetry", late.as_bytes()).await;
    assert_eq!(ack.reason_code, ReasonCode::QUOTA_EXCEEDED, "{ack:?}");
    assert!(reason_string(&ack).contains("budget"), "{ack:?}");
    let ack = publish1_ack(&mut dev, 2, "devices/pump/events/boot", b"{}").await;
    assert_eq!(ack.reason_code, ReasonCode::QUOTA_EXCEEDED, "{ack:?}");
    let mut dev3 = Raw::login(&w.s.mqtt, V3, "pump3", &w.pump, None).await;
    let ack = publish1_ack(&mut dev3, 1, "devices/pump/telemetry", late.as_bytes()).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "3.1.1 cannot say no");
    assert_eq!(refused_total(&w.s, "quota_exceeded").await, quota + 4.0);
    assert_eq!(
        all_points(&owner, "pump", "x").await.len(),
        stored,
        "nothing more stored"
    );
    assert_eq!(event_count(&owner, "pump").await, 0);
    assert_eq!(metric(&w.s, &gauge("budget_warning")).await, 1.0);

    // Another tenant is not limited by this one's budget.
    let beta = tenant_with_owner(&w.s, &w.admin, "beta").await;
    let beta_pump = create_device(&beta, "pump").await;
    ingest_ok(&w.s, &beta_pump, r#"{"x": 1}"#).await;

    // A larger budget lets data in again; the warning clears.
    let r = put_settings(&owner, json!({"disk_budget_bytes": budget * 10})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    ingest_ok(&w.s, &w.pump, &late).await;
    assert_eq!(metric(&w.s, &gauge("budget_warning")).await, 0.0);
    let ack = publish1_ack(&mut dev, 3, "devices/pump/events/boot", b"{}").await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(all_points(&owner, "pump", "x").await.len(), stored + 1);
    w.s.stop().await;
}

/// Product bug, kept as its reproducer: `publish_usage` in
/// ferrule-store/src/telemetry/embedded/mod.rs updates the budget gauges only
/// while a budget is set, so removing the budget leaves
/// `ferrule_telemetry_tenant_budget_warning` (and `…_budget_bytes`,
/// `…_budget_used_ratio`) at their last values — a warning that never clears.
#[tokio::test]
async fn removing_the_budget_clears_the_warning() {
    let w = World::start().await;
    let owner = user_api(&w.s, &w.admin, "owner@example.com", "owner").await;
    let warning = "ferrule_telemetry_tenant_budget_warning{tenant=\"default\"}";
    ingest_ok(&w.s, &w.pump, r#"{"x": 1}"#).await;
    let r = put_settings(&owner, json!({"disk_budget_bytes": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(metric(&w.s, warning).await, 1.0, "over budget");
    let r = put_settings(&owner, json!({"disk_budget_bytes": null})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    ingest_ok(&w.s, &w.pump, r#"{"x": 2}"#).await;
    assert_eq!(
        metric(&w.s, warning).await,
        0.0,
        "no budget, nothing to warn about"
    );
    w.s.stop().await;
}

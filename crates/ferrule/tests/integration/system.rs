//! `GET /api/v1/system` and the console's overview of load and capacity:
//! connections by transport, memory, disk, each tenant's ingest rate and
//! the days until its disk budget is full — counted per tenant, so one
//! tenant's traffic never shows as another's, and shown whole to admins
//! only.

use std::time::{Duration, Instant};

use ferrule_mqtt::codec::ReasonCode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::Browser;
use crate::mqtt_util::{Raw, V5};
use crate::util::{Api, Server, USER_PASSWORD, tenant_with_owner, viewer_editor_owner};

const MIB: u64 = 1024 * 1024;

/// The tenant's entry in a system report.
fn tenant<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .expect("tenants is a list")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("tenant {id} in {report}"))
}

/// Reads the report until `ready` holds (the load is read every 2 s).
async fn report_when(admin: &Api, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = admin.get("/api/v1/system").await;
        assert_eq!(r.status, 200, "{}", r.text);
        if ready(&r.json) {
            return r.json;
        }
        assert!(Instant::now() < deadline, "{what}: {}", r.json);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn the_system_report_counts_each_tenants_load_against_its_budget() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let beta = tenant_with_owner(&s, &admin, "beta").await;
    let r = admin.post("/api/v1/devices", json!({"id": "pump"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        beta.post("/api/v1/devices", json!({"id": "b1"}))
            .await
            .status,
        201
    );
    let r = admin
        .patch(
            "/api/v1/telemetry/settings",
            json!({"disk_budget_bytes": 64 * MIB}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Before any traffic: the figures that need no history.
    let first = admin.get("/api/v1/system").await.json;
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first["ingest"]["capacity_points_per_s"], 595_316.0);
    assert!(
        first["ingest"]["capacity_source"]
            .as_str()
            .unwrap()
            .contains("BENCHMARKS.md"),
        "{first}"
    );
    assert!(
        first["disk"]["data_dir_bytes"].as_u64().unwrap() > 0,
        "{first}"
    );
    assert!(first["disk"]["free_bytes"].as_u64().unwrap() > 0, "{first}");
    if cfg!(target_os = "linux") {
        assert!(
            first["memory"]["rss_bytes"].as_u64().unwrap() > MIB,
            "{first}"
        );
    }
    assert!(
        first["connections"]["http"].as_u64().unwrap() >= 1,
        "{first}"
    );

    // One device of `default` publishes 20 points a message, 10 a second.
    let mut dev = Raw::login(&s.mqtt, V5, "pump", &token, None).await;
    let connected = report_when(&admin, "the MQTT connection counted", |r| {
        r["connections"]["mqtt"]["tcp"] == 1 && tenant(r, "default")["online"] == 1
    })
    .await;
    let mqtt = &connected["connections"]["mqtt"];
    assert_eq!(mqtt["tls"], 0);
    assert_eq!(mqtt["websocket"], 0);
    assert_eq!(mqtt["total"], 1);
    assert_eq!(tenant(&connected, "default")["connections"], 1);
    assert_eq!(tenant(&connected, "default")["online"], 1);
    assert_eq!(tenant(&connected, "beta")["connections"], 0);

    let values: serde_json::Map<String, Value> =
        (0..20).map(|k| (format!("k{k}"), json!(k))).collect();
    let payload = serde_json::to_vec(&Value::Object(values)).unwrap();
    let sending = Instant::now();
    let mut sent = 0u16;
    while sending.elapsed() < Duration::from_secs(5) {
        sent += 1;
        let code = dev.publish1(sent, "devices/pump/telemetry", &payload).await;
        assert_eq!(code, ReasonCode::SUCCESS);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report_when(&admin, "the tenant's rate and growth measured", |r| {
        let d = tenant(r, "default");
        d["points_per_s"].as_f64().is_some_and(|p| p > 0.0)
            && d["days_until_full"].as_f64().is_some()
    })
    .await;
    let d = tenant(&report, "default");
    assert_eq!(d["devices"], 1);
    assert_eq!(d["budget_bytes"], 64 * MIB);
    let points = d["points_per_s"].as_f64().unwrap();
    let messages = d["messages_per_s"].as_f64().unwrap();
    // 20 points a message; the window may hold partial seconds.
    assert!(
        (points / messages - 20.0).abs() < 1.0,
        "points {points} vs messages {messages}"
    );
    let used = d["disk_bytes"].as_f64().unwrap();
    let per_day = d["bytes_per_day"].as_f64().unwrap();
    let days = d["days_until_full"].as_f64().unwrap();
    assert!(used > 0.0 && per_day > 0.0, "{d}");
    let expected = (64.0 * MIB as f64 - used) / per_day;
    assert!(
        (days - expected).abs() <= 0.1 + expected * 0.01,
        "{days} days, expected {expected}: {d}"
    );
    // The other tenant sent nothing, has no budget: nothing of default's
    // load is counted as its own.
    let b = tenant(&report, "beta");
    assert_eq!(b["points_per_s"], 0.0, "{b}");
    assert_eq!(b["messages_per_s"], 0.0, "{b}");
    assert_eq!(b["budget_bytes"], Value::Null);
    assert_eq!(b["days_until_full"], Value::Null);
    assert_eq!(b["devices"], 1);
    // Server-wide ingest is the sum, against the benchmarked capacity.
    let ingest = &report["ingest"];
    let total = ingest["points_per_s"].as_f64().unwrap();
    assert!(total >= points - 0.1, "{ingest}");
    let ratio = ingest["use_ratio"].as_f64().unwrap();
    assert!(
        ratio > 0.0 && (ratio - total / 595_316.0).abs() < 1e-4,
        "{ingest}"
    );
    assert_eq!(ingest["window_s"], 60);

    // The console: an admin sees the whole server...
    let mut b = Browser::admin(&s).await;
    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"system\""), "{}", page.body);
    assert!(
        page.body.contains("<th scope=\"row\">beta</th>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("595316 points/s"), "{}", page.body);
    let days_cell = page
        .body
        .split("id=\"days-until-full\">")
        .nth(1)
        .unwrap_or_default();
    assert!(days_cell.contains(" days<small>at "), "{}", page.body);

    // ...a user of the tenant its own tenant only...
    let [_viewer, _, _] = viewer_editor_owner(&s, &admin).await;
    let mut v = Browser::new(&s);
    v.login("v@x.io", USER_PASSWORD, "/").await;
    let page = v.get("/overview/stats").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"system\""), "{}", page.body);
    assert!(!page.body.contains("beta"), "{}", page.body);
    assert!(page.body.contains(" days<small>at "), "{}", page.body);
    assert!(!page.body.contains("measuring"), "{}", page.body);

    // ...and another tenant's owner sees none of it.
    let mut o = Browser::new(&s);
    let r = o.login("owner@beta.example", "owner-password", "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = o.get("/").await;
    assert!(!page.body.contains("id=\"system\""), "{}", page.body);
    assert!(!page.body.contains(">default<"), "{}", page.body);
    let rate = page
        .body
        .split("id=\"tenant-points\">")
        .nth(1)
        .unwrap_or_default();
    assert!(
        rate.starts_with("0.0<small>") || rate.starts_with("0<small>"),
        "beta's own rate: {}",
        page.body
    );
    assert!(page.body.contains("no budget set"), "{}", page.body);

    // A closed connection leaves the count.
    drop(dev);
    report_when(&admin, "the closed connection uncounted", |r| {
        r["connections"]["mqtt"]["total"] == 0
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn the_system_report_is_for_admins_only() {
    let s = Server::start().await;
    let admin = s.admin().await;
    let users = viewer_editor_owner(&s, &admin).await;
    for (user, role) in users.iter().zip(["viewer", "editor", "owner"]) {
        let r = user.get("/api/v1/system").await;
        r.assert_problem(403);
        assert!(r.text.contains("admins"), "{role}: {}", r.text);
        // An owner's API key is no more.
        if role == "owner" {
            let key = user
                .post("/api/v1/api-keys", json!({"name": "k", "role": "owner"}))
                .await;
            assert_eq!(key.status, 201, "{}", key.text);
            let secret = key.json["secret"].as_str().unwrap();
            s.api(secret)
                .get("/api/v1/system")
                .await
                .assert_problem(403);
        }
    }
    s.anon().get("/api/v1/system").await.assert_problem(401);
    // An admin's key reads it, as the admin does.
    let key = admin
        .post("/api/v1/api-keys", json!({"name": "ops", "role": "admin"}))
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let r = s
        .api(key.json["secret"].as_str().unwrap())
        .get("/api/v1/system")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["tenants"].is_array());
    s.stop().await;
}

//! Webhook actions against a real local HTTP server: success, failures
//! retried with backoff into a dead letter and replayed, timeouts, and one
//! tenant's slow endpoint not delaying another's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mqtt_util::create_device;
use crate::rules_util::{Hook, create_rule, rule_until};
use crate::util::{Api, Server, ServerBuilder, tenant_with_owner};

async fn server() -> Server {
    ServerBuilder::new()
        .env("FERRULE_RULES_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("FERRULE_RULES_WEBHOOK_CONCURRENCY_PER_TENANT", "2")
        .start()
        .await
}

/// Sends telemetry over HTTP ingest with a device's token.
async fn ingest(server: &Server, token: &str, body: Value) {
    let r = server
        .api(token)
        .post("/api/v1/ingest/telemetry", body)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

async fn dead_letters(api: &Api, rule: &str) -> Vec<Value> {
    let r = api.get(&format!("/api/v1/rules/{rule}/dead-letters")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_kept_and_replayed() {
    let server = server().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "meter").await;
    let mut hook = Hook::start().await;
    hook.answer(500, Duration::ZERO);
    create_rule(
        &admin,
        "notify",
        "SELECT kwh FROM 'devices/+/telemetry'",
        json!([{"type": "webhook", "url": format!("{}/in", hook.url), "retries": 2, "backoff_ms": 200,
            "headers": {"Authorization": "Bearer s3cret"}}]),
    )
    .await;
    ingest(&server, &token, json!({"kwh": 7})).await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(hook.next(Duration::from_secs(5)).await.expect("an attempt"));
    }
    assert!(
        hook.next(Duration::from_millis(800)).await.is_none(),
        "no more than 1 + 2 retries"
    );
    assert!(calls.iter().all(|c| c.body == r#"{"kwh":7}"#));
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Exponential with jitter: the second wait is not shorter than the
    // least the first could be.
    assert!(gaps[0] >= Duration::from_millis(90), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(180), "{gaps:?}");

    let view = rule_until(&admin, "notify", "failed", |r| {
        r["stats"]["actions_failed"] == 1
    })
    .await;
    assert!(
        view["stats"]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{view}"
    );
    let letters = dead_letters(&admin, "notify").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["attempts"], 3, "{letter}");
    assert!(
        letter["error"].as_str().unwrap().contains("500"),
        "{letter}"
    );

    // Fixed: replay sends the same request again.
    hook.answer(200, Duration::ZERO);
    let id = letter["id"].as_u64().unwrap();
    let r = admin
        .post(
            &format!("/api/v1/rules/notify/dead-letters/{id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let again = hook.next(Duration::from_secs(5)).await.expect("replayed");
    assert_eq!(again.body, calls[0].body);
    assert_eq!(again.headers["authorization"], "Bearer s3cret");
    let letters = dead_letters(&admin, "notify").await;
    assert!(letters[0]["replayed_at"].is_string(), "{letters:?}");
    // Another tenant cannot see or replay it.
    let other = tenant_with_owner(&server, &admin, "other").await;
    other
        .get("/api/v1/rules/notify/dead-letters")
        .await
        .assert_problem(404);
    other
        .post(
            &format!("/api/v1/rules/notify/dead-letters/{id}/replay"),
            json!({}),
        )
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_timeout_is_a_failure() {
    let server = server().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "slowpoke").await;
    let mut hook = Hook::start().await;
    hook.answer(200, Duration::from_secs(3));
    create_rule(
        &admin,
        "impatient",
        "SELECT * FROM 'devices/+/telemetry'",
        json!([{"type": "webhook", "url": hook.url, "timeout_ms": 300, "retries": 0}]),
    )
    .await;
    ingest(&server, &token, json!({"x": 1})).await;
    assert!(hook.next(Duration::from_secs(5)).await.is_some());
    let view = rule_until(&admin, "impatient", "timed out", |r| {
        r["stats"]["actions_failed"] == 1
    })
    .await;
    assert_eq!(view["stats"]["actions_ok"], 0);
    assert_eq!(dead_letters(&admin, "impatient").await.len(), 1);
}

#[tokio::test]
async fn a_slow_endpoint_of_one_tenant_does_not_delay_another() {
    let server = server().await;
    let admin = server.admin().await;
    let slow_tenant = tenant_with_owner(&server, &admin, "slow").await;
    let fast_tenant = tenant_with_owner(&server, &admin, "fast").await;
    let slow_token = create_device(&slow_tenant, "s").await;
    let fast_token = create_device(&fast_tenant, "f").await;
    let mut slow_hook = Hook::start().await;
    slow_hook.answer(200, Duration::from_secs(4));
    let mut fast_hook = Hook::start().await;
    for (api, hook) in [(&slow_tenant, &slow_hook), (&fast_tenant, &fast_hook)] {
        create_rule(
            api,
            "hook",
            "SELECT * FROM 'devices/+/telemetry'",
            json!([{"type": "webhook", "url": hook.url, "timeout_ms": 10000, "retries": 0}]),
        )
        .await;
    }
    // The slow tenant's endpoint holds all its calls in flight, and more wait.
    for n in 0..20 {
        ingest(&server, &slow_token, json!({"n": n})).await;
    }
    assert!(slow_hook.next(Duration::from_secs(5)).await.is_some());
    let sent = Instant::now();
    ingest(&server, &fast_token, json!({"n": 1})).await;
    let call = fast_hook
        .next(Duration::from_secs(5))
        .await
        .expect("fast tenant's webhook");
    let took = call.at - sent;
    assert!(took < Duration::from_millis(1000), "took {took:?}");
}

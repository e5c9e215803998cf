//! Rules through the real binary, with mosquitto clients, real devices and
//! a real local HTTP server: what users write, and what they then see.

use std::time::Duration;

use serde_json::{Value, json};

use crate::device_peer::device;
use crate::mqtt_util::create_device;
use crate::rules_util::{Hook, Watch, create_rule, publish, rule_until};
use crate::util::{Server, ServerBuilder, metric, tenant_with_owner, viewer_editor_owner};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(700);

/// A server whose webhooks may reach this machine (the test's receiver).
async fn server_with_local_webhooks() -> Server {
    ServerBuilder::new()
        .env("FERRULE_RULES_WEBHOOK_ALLOW_PRIVATE", "true")
        .start()
        .await
}

#[tokio::test]
async fn a_rule_republishes_what_passes_and_counts_it() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let rule = create_rule(
        &admin,
        "hot",
        "SELECT temp, device_id() AS device, topic(3) AS kind\n\
         FROM 'devices/+/telemetry' WHERE temp > 30",
        json!([{"type": "republish", "topic": "alerts/${device}", "qos": 1}]),
    )
    .await;
    assert_eq!(rule["version"], 1);
    assert_eq!(rule["enabled"], true);
    assert_eq!(rule["sources"], json!(["devices/+/telemetry"]));
    // Telemetry of a device the tenant has (others are refused, not routed).
    create_device(&admin, "pump-1").await;
    let mut watch = Watch::start(&server, &["alerts/#"]).await;
    publish(&server, "devices/pump-1/telemetry", r#"{"temp": 25}"#).await;
    publish(&server, "devices/pump-1/telemetry", r#"{"temp": 31.5}"#).await;
    let (topic, payload) = watch.next(WAIT).await.expect("a republished alert");
    assert_eq!(topic, "alerts/pump-1");
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        payload,
        json!({"temp": 31.5, "device": "pump-1", "kind": "telemetry"})
    );
    assert_eq!(watch.drain(QUIET).await, vec![], "only what passed");
    let view = rule_until(&admin, "hot", "counted", |r| r["stats"]["matched"] == 2).await;
    assert_eq!(view["stats"]["passed"], 1);
    assert_eq!(view["stats"]["actions_ok"], 1);
    assert_eq!(view["stats"]["errors"], 0);
    let metrics = server.anon().get("/metrics").await.text;
    assert_eq!(
        metric(
            &metrics,
            "ferrule_rule_passed_total{tenant=\"default\",rule=\"hot\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn changes_apply_to_the_next_message_without_a_restart() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_rule(
        &admin,
        "fwd",
        "SELECT * FROM 'in/#'",
        json!([{"type": "republish", "topic": "out/a"}]),
    )
    .await;
    let mut watch = Watch::start(&server, &["out/#"]).await;
    publish(&server, "in/1", r#"{"n": 1}"#).await;
    assert_eq!(watch.next(WAIT).await.unwrap().0, "out/a");

    // Disabled: nothing more; the definition and counters stay.
    let r = admin.post("/api/v1/rules/fwd/disable", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["enabled"], false);
    assert_eq!(r.json["version"], 2);
    publish(&server, "in/2", r#"{"n": 2}"#).await;
    assert_eq!(watch.drain(QUIET).await, vec![]);

    // Enabled and replaced: the new topic at once.
    assert_eq!(
        admin
            .post("/api/v1/rules/fwd/enable", json!({}))
            .await
            .status,
        200
    );
    let r = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/rules/fwd",
            Some(json!({"sql": "SELECT n FROM 'in/#' WHERE n > 2",
                "actions": [{"type": "republish", "topic": "out/b", "payload": "n=${n}"}]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["version"], 4);
    publish(&server, "in/3", r#"{"n": 2}"#).await;
    publish(&server, "in/4", r#"{"n": 3}"#).await;
    assert_eq!(
        watch.next(WAIT).await,
        Some(("out/b".to_owned(), "n=3".to_owned()))
    );
    assert_eq!(watch.drain(QUIET).await, vec![]);

    // A stale If-Match is refused; deleting stops it.
    let stale = server
        .admin()
        .await
        .with_header("If-Match", "\"2\"")
        .send(
            reqwest::Method::PUT,
            "/api/v1/rules/fwd",
            Some(json!({"sql": "SELECT * FROM 'in/#'"})),
        )
        .await;
    stale.assert_problem(412);
    assert_eq!(admin.delete("/api/v1/rules/fwd").await.status, 204);
    publish(&server, "in/5", r#"{"n": 9}"#).await;
    assert_eq!(watch.drain(QUIET).await, vec![]);
    admin.get("/api/v1/rules/fwd").await.assert_problem(404);
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_where() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let r = admin
        .post(
            "/api/v1/rules",
            json!({"sql": "SELECT temp\nFROM 'devices/+/telemetry' WHERE temp >", "actions": []}),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(r.json["field"], "sql");
    assert_eq!(r.json["line"], 2, "{}", r.text);
    assert!(r.json["column"].as_u64().unwrap() > 1, "{}", r.text);

    // Ids that would shadow fixed paths, where the rule could not be read.
    for id in ["test", "new"] {
        let r = admin
            .post(
                "/api/v1/rules",
                json!({"id": id, "sql": "SELECT * FROM 't'", "actions": []}),
            )
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], "id", "{}", r.text);
    }

    let r = admin
        .post(
            "/api/v1/rules",
            json!({"sql": "SELECT nosuch(temp) FROM 't'", "actions": []}),
        )
        .await;
    r.assert_problem(400);
    assert_eq!(
        (r.json["line"].clone(), r.json["column"].clone()),
        (json!(1), json!(8)),
        "{}",
        r.text
    );

    for (actions, field) in [
        (
            json!([{"type": "republish", "topic": "a/+"}]),
            "actions[0].topic",
        ),
        (
            json!([{"type": "republish", "topic": "$ferrule/devices/x/twin"}]),
            "actions[0].topic",
        ),
        (
            json!([{"type": "republish", "topic": "a", "qos": 3}]),
            "actions[0].qos",
        ),
        (
            json!([{"type": "alarm", "alarm_type": "x", "severity": "awful"}]),
            "actions[0].severity",
        ),
        (
            json!([{"type": "command", "name": "bad name"}]),
            "actions[0].name",
        ),
        (json!([{"type": "teleport"}]), "actions[0]"),
        (
            json!([{"type": "webhook", "url": "ftp://example.com/x"}]),
            "actions[0].url",
        ),
    ] {
        let r = admin
            .post(
                "/api/v1/rules",
                json!({"sql": "SELECT * FROM 'a'", "actions": actions}),
            )
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], field, "{}", r.text);
    }
    // Webhooks to this machine or private networks are refused unless the
    // instance allows them.
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://[::1]/",
    ] {
        let r = admin
            .post(
                "/api/v1/rules",
                json!({"sql": "SELECT * FROM 'a'", "actions": [{"type": "webhook", "url": url}]}),
            )
            .await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], "actions[0].url", "{url}: {}", r.text);
    }
    let r = admin.get("/api/v1/rules").await;
    assert_eq!(r.json["items"], json!([]), "nothing was saved");
}

#[tokio::test]
async fn a_republish_loop_is_stopped() {
    let server = Server::start().await;
    let admin = server.admin().await;
    // Each rule feeds the other; one also feeds itself.
    create_rule(
        &admin,
        "ping",
        "SELECT * FROM 'loop/a/#'",
        json!([{"type": "republish", "topic": "loop/b/x"}, {"type": "republish", "topic": "loop/a/self"}]),
    )
    .await;
    create_rule(
        &admin,
        "pong",
        "SELECT * FROM 'loop/b/#'",
        json!([{"type": "republish", "topic": "loop/a/x"}]),
    )
    .await;
    let mut watch = Watch::start(&server, &["loop/#"]).await;
    publish(&server, "loop/a/start", r#"{"n": 1}"#).await;
    let seen = watch.drain(Duration::from_secs(1)).await;
    // Bounded, and small: the hop limit ends it.
    assert!(
        !seen.is_empty() && seen.len() < 64,
        "{} messages: {seen:?}",
        seen.len()
    );
    assert_eq!(
        watch.drain(Duration::from_secs(1)).await,
        vec![],
        "it stopped"
    );
    let metrics = server.anon().get("/metrics").await.text;
    assert!(
        metric(
            &metrics,
            "ferrule_rules_loops_stopped_total{tenant=\"default\"}"
        ) >= 1.0,
        "{metrics}"
    );
    // The hop limit (8) decides exactly: `ping` evaluates the messages of
    // hops 0, 2, 4, 6, `pong` those of 1, 3, 5, 7; `ping` never evaluates
    // its own `loop/a/self` (else it would match far more).
    let ping = admin.get("/api/v1/rules/ping").await.json;
    let pong = admin.get("/api/v1/rules/pong").await.json;
    assert_eq!(ping["stats"]["matched"], 4, "{ping}");
    assert_eq!(ping["stats"]["actions_ok"], 8, "{ping}");
    assert_eq!(pong["stats"]["matched"], 4, "{pong}");
    // 1 published + 8 by ping + 4 by pong.
    assert_eq!(seen.len(), 13, "{seen:?}");
}

#[tokio::test]
async fn a_failing_rule_shows_its_error_and_the_flow_goes_on() {
    let server = Server::start().await;
    let admin = server.admin().await;
    // A name with `+` makes a topic no one may publish on.
    create_rule(
        &admin,
        "picky",
        "SELECT upper(name) AS n FROM 'things/#' WHERE abs(level) > 1",
        json!([{"type": "republish", "topic": "picked/${n}"}]),
    )
    .await;
    let mut watch = Watch::start(&server, &["things/#", "picked/#"]).await;
    publish(&server, "things/1", r#"{"level": -5, "name": "a+b"}"#).await;
    publish(&server, "things/2", r#"{"level": "high", "name": "x"}"#).await;
    publish(&server, "things/3", r#"{"level": -5, "name": "y"}"#).await;
    let got = watch.drain(QUIET).await;
    // Subscribers get everything; the rule passes the first and the last,
    // and only the last can be published.
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got.contains(&("picked/Y".to_owned(), r#"{"n":"Y"}"#.to_owned())),
        "{got:?}"
    );
    let view = rule_until(&admin, "picky", "failed", |r| r["stats"]["errors"] == 1).await;
    assert_eq!(view["stats"]["matched"], 3, "{view}");
    assert_eq!(view["stats"]["passed"], 2, "{view}");
    assert_eq!(view["stats"]["actions_failed"], 1, "{view}");
    assert_eq!(view["stats"]["actions_ok"], 1, "{view}");
    let last = &view["stats"]["last_error"];
    assert_eq!(last["topic"], "things/1", "{view}");
    assert!(last["sample"].as_str().unwrap().contains("a+b"), "{view}");
    assert!(
        last["message"].as_str().unwrap().contains("picked/A+B"),
        "{view}"
    );
    let metrics = server.anon().get("/metrics").await.text;
    assert_eq!(
        metric(
            &metrics,
            "ferrule_rule_errors_total{tenant=\"default\",rule=\"picky\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn rules_see_twin_and_connectivity_events_and_read_attributes() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let token = create_device(&admin, "boiler").await;
    let r = admin
        .patch(
            "/api/v1/devices/boiler/attributes",
            json!({"max_temp": 80, "site": "north"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    create_rule(
        &admin,
        "too-hot",
        "SELECT temp, attributes.site AS site FROM 'devices/+/telemetry' WHERE temp > attributes.max_temp",
        json!([{"type": "republish", "topic": "hot/${site}"}]),
    )
    .await;
    create_rule(
        &admin,
        "online",
        "SELECT device_id() AS d, * FROM '$ferrule/devices/+/connectivity'",
        json!([{"type": "republish", "topic": "status/${d}"}]),
    )
    .await;
    create_rule(
        &admin,
        "twin",
        "SELECT device_id() AS d FROM '$ferrule/devices/+/twin'",
        json!([{"type": "republish", "topic": "twin-changed/${d}"}]),
    )
    .await;
    let mut watch = Watch::start(&server, &["hot/#", "status/#", "twin-changed/#"]).await;
    let mut dev = device(&server, &token, "boiler", 5).await;
    let (topic, payload) = watch.next(WAIT).await.expect("online event republished");
    assert_eq!(topic, "status/boiler");
    assert!(payload.contains("\"d\":\"boiler\""), "{payload}");
    assert_eq!(dev.publish("telemetry", r#"{"temp": 79}"#).await, 0);
    assert_eq!(dev.publish("telemetry", r#"{"temp": 81}"#).await, 0);
    let (topic, payload) = watch.next(WAIT).await.expect("hot republished");
    assert_eq!(topic, "hot/north");
    assert_eq!(
        serde_json::from_str::<Value>(&payload).unwrap(),
        json!({"temp": 81, "site": "north"})
    );
    assert_eq!(dev.report(&json!({"valve": "open"})).await, 0);
    let (topic, _) = watch.next(WAIT).await.expect("twin event republished");
    assert_eq!(topic, "twin-changed/boiler");

    // Attributes changed through the API apply to the next message.
    admin
        .patch("/api/v1/devices/boiler/attributes", json!({"max_temp": 90}))
        .await;
    assert_eq!(dev.publish("telemetry", r#"{"temp": 85}"#).await, 0);
    assert_eq!(watch.drain(QUIET).await, vec![]);
}

#[tokio::test]
async fn store_and_command_actions_reach_other_devices() {
    let server = Server::start().await;
    let admin = server.admin().await;
    create_device(&admin, "sensor").await;
    create_device(&admin, "summary").await;
    let fan_token = create_device(&admin, "fan").await;
    let mut fan = device(&server, &fan_token, "fan", 5).await;
    create_rule(
        &admin,
        "derive",
        "SELECT round(temp * 9 / 5 + 32, 1) AS temp_f FROM 'devices/sensor/telemetry'",
        json!([{"type": "store", "device": "summary"}]),
    )
    .await;
    create_rule(
        &admin,
        "cool",
        "SELECT temp FROM 'devices/sensor/telemetry' WHERE temp > 30",
        json!([{"type": "command", "device": "fan", "name": "echo", "params": {"speed": "${temp}"}}]),
    )
    .await;
    publish(&server, "devices/sensor/telemetry", r#"{"temp": 35}"#).await;
    let cmd = fan.expect("command", |c| c["name"] == "echo").await;
    assert_eq!(cmd["params"], json!({"speed": 35}));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = admin.get("/api/v1/devices/summary/telemetry/latest").await;
        if r.json["temp_f"]["value"] == json!(95) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not stored: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let commands = admin.get("/api/v1/devices/fan/commands").await;
    assert_eq!(
        commands.json["items"][0]["requested_by"], "rule:cool",
        "{}",
        commands.text
    );
    // A store action naming a device the tenant does not have fails, counted.
    create_rule(
        &admin,
        "nowhere",
        "SELECT temp FROM 'devices/sensor/telemetry'",
        json!([{"type": "store", "device": "ghost"}]),
    )
    .await;
    publish(&server, "devices/sensor/telemetry", r#"{"temp": 1}"#).await;
    let view = rule_until(&admin, "nowhere", "failed", |r| {
        r["stats"]["actions_failed"] == 1
    })
    .await;
    assert!(
        view["stats"]["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("ghost"),
        "{view}"
    );
}

#[tokio::test]
async fn rules_stay_in_their_tenant_and_role() {
    let server = Server::start().await;
    let admin = server.admin().await;
    let [viewer, editor, _owner] = viewer_editor_owner(&server, &admin).await;
    let r = viewer
        .post(
            "/api/v1/rules",
            json!({"sql": "SELECT * FROM 'a'", "actions": []}),
        )
        .await;
    r.assert_problem(403);
    create_rule(
        &editor,
        "mine",
        "SELECT * FROM 'shared/#'",
        json!([{"type": "republish", "topic": "copied"},
            {"type": "webhook", "url": "https://hooks.example.com/in",
                "headers": {"Authorization": "Bearer top-secret"}}]),
    )
    .await;
    // Viewers read rules, but not the credentials in webhook headers.
    let seen = viewer.get("/api/v1/rules/mine").await;
    assert_eq!(seen.status, 200);
    assert!(!seen.text.contains("top-secret"), "{}", seen.text);
    let full = editor.get("/api/v1/rules/mine").await;
    assert_eq!(
        full.json["actions"][1]["headers"]["Authorization"],
        "Bearer top-secret"
    );
    viewer
        .post("/api/v1/rules/mine/disable", json!({}))
        .await
        .assert_problem(403);
    viewer
        .delete("/api/v1/rules/mine")
        .await
        .assert_problem(403);

    // Another tenant sees nothing of it, and its messages do not reach it.
    let other = tenant_with_owner(&server, &admin, "other").await;
    other.get("/api/v1/rules/mine").await.assert_problem(404);
    other.delete("/api/v1/rules/mine").await.assert_problem(404);
    assert_eq!(other.get("/api/v1/rules").await.json["items"], json!([]));
    let mut watch = Watch::start(&server, &["copied"]).await;
    // The admin publishes in tenant default: the rule runs.
    publish(&server, "shared/x", "{}").await;
    assert!(watch.next(WAIT).await.is_some());
    let view = editor.get("/api/v1/rules/mine").await.json;
    assert_eq!(view["stats"]["matched"], 1);

    // Deleting the tenant deletes its rules.
    create_rule(
        &other,
        "theirs",
        "SELECT * FROM 'x'",
        json!([{"type": "republish", "topic": "y"}]),
    )
    .await;
    assert_eq!(admin.delete("/api/v1/tenants/other").await.status, 204);
    let again = tenant_with_owner(&server, &admin, "other").await;
    assert_eq!(again.get("/api/v1/rules").await.json["items"], json!([]));
}

#[tokio::test]
async fn the_dry_run_shows_what_the_live_run_then_does() {
    let server = server_with_local_webhooks().await;
    let admin = server.admin().await;
    create_device(&admin, "press").await;
    let mut hook = Hook::start().await;
    let sql = "SELECT pressure, device_id() AS dev, upper(unit) AS unit\n\
               FROM 'devices/+/telemetry' WHERE pressure > 7";
    let actions = json!([
        {"type": "republish", "topic": "over/${dev}", "qos": 1},
        {"type": "webhook", "url": format!("{}/hooks/${{dev}}", hook.url),
            "headers": {"X-Pressure": "${pressure}"}, "retries": 0},
        {"type": "alarm", "alarm_type": "overpressure", "severity": "critical",
            "details": {"p": "${pressure}"}},
    ]);
    let sample = json!({"pressure": 8.5, "unit": "bar"});
    let r = admin
        .post(
            "/api/v1/rules/test",
            json!({"sql": sql, "actions": actions,
                "messages": [{"topic": "devices/press/telemetry", "payload": sample},
                             {"topic": "devices/press/telemetry", "payload": {"pressure": 1}},
                             {"topic": "elsewhere", "payload": {"pressure": 9}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.json["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(
        (results[1]["matched"].clone(), results[1]["passed"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(results[2]["matched"], false);
    let dry = &results[0];
    assert_eq!(dry["passed"], true, "{dry}");
    assert_eq!(
        dry["output"],
        json!({"pressure": 8.5, "dev": "press", "unit": "BAR"})
    );
    let planned = dry["actions"].as_array().unwrap();
    assert_eq!(planned[0]["type"], "republish");
    assert_eq!(planned[1]["type"], "webhook");
    assert_eq!(planned[2]["transition"]["transition"], "raised", "{dry}");
    // Nothing was done.
    assert!(hook.next(QUIET).await.is_none());
    assert_eq!(admin.get("/api/v1/alarms").await.json["items"], json!([]));

    // Live: the same message does exactly that.
    create_rule(&admin, "pressure", sql, actions).await;
    let mut watch = Watch::start(&server, &["over/#"]).await;
    publish(&server, "devices/press/telemetry", &sample.to_string()).await;
    let (topic, payload) = watch.next(WAIT).await.expect("republished");
    assert_eq!(topic, planned[0]["topic"]);
    assert_eq!(payload, planned[0]["payload"]);
    let call = hook.next(WAIT).await.expect("webhook called");
    assert_eq!(format!("{}{}", hook.url, call.path), planned[1]["url"]);
    assert_eq!(call.method, planned[1]["method"]);
    assert_eq!(call.body, planned[1]["body"]);
    assert_eq!(call.headers["x-pressure"], "8.5");
    let alarms = loop {
        let a = admin.get("/api/v1/alarms").await;
        if !a.json["items"].as_array().unwrap().is_empty() {
            break a.json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let alarm = &alarms["items"][0];
    assert_eq!(alarm["type"], "overpressure");
    assert_eq!(alarm["severity"], "critical");
    assert_eq!(alarm["details"], planned[2]["details"]);
    assert_eq!(alarm["originator"], "rule:pressure");

    // Now the dry run says the same message would update that alarm.
    let r = admin
        .post(
            "/api/v1/rules/test",
            json!({"sql": sql, "actions": [{"type": "alarm", "alarm_type": "overpressure"}],
                "messages": [{"topic": "devices/press/telemetry", "payload": sample}]}),
        )
        .await;
    assert_eq!(
        r.json["results"][0]["actions"][0]["transition"],
        json!({"transition": "updated", "id": alarm["id"]}),
        "{}",
        r.text
    );
    // And on stored messages: the telemetry the live run stored.
    let r = admin
        .post(
            "/api/v1/rules/test",
            json!({"sql": sql, "recent": {"topic": "devices/+/telemetry", "limit": 5}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recent = r.json["results"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{}", r.text);
    assert_eq!(
        recent[0]["payload"],
        json!({"pressure": 8.5, "unit": "bar"})
    );
    assert_eq!(recent[0]["passed"], true);
    // And on stored events, newest first.
    publish(&server, "devices/press/events/valve", r#"{"n": 1}"#).await;
    publish(&server, "devices/press/events/valve", r#"{"n": 2}"#).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let events = loop {
        let r = admin
            .post(
                "/api/v1/rules/test",
                json!({"sql": "SELECT n FROM 'devices/+/events/#'",
                    "recent": {"topic": "devices/+/events/#", "limit": 1}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json["results"][0]["output"] == json!({"n": 2})
            || tokio::time::Instant::now() > deadline
        {
            break r.json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events["results"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events["results"][0]["topic"], "devices/press/events/valve");
    assert_eq!(events["results"][0]["output"], json!({"n": 2}), "{events}");
}

#[tokio::test]
async fn a_bad_rules_setting_is_refused_at_start() {
    let exited = ServerBuilder::new()
        .env("FERRULE_RULES_QUEUE_PER_TENANT", "0")
        .run_to_exit()
        .await;
    exited.assert_refused("rules.queue_per_tenant", "at least 1");
}

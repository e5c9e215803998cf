//! Deleting a tenant or a device removes everything it owns, everywhere:
//! identities and credentials, ACL rules, login sessions, MQTT connections
//! (closed with 0x98) and sessions (in memory and on disk), retained
//! messages, telemetry (sealed and recent, latest values), events and
//! telemetry settings. A tenant or device created again under the same id
//! starts empty, at once, after a restart, and after a kill in the middle
//! of the background purge.

use std::time::Duration;

use ferrule_mqtt::codec::{Packet, QoS, ReasonCode};
use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_util::{
    Raw, V5, World, add_device_password, connect_packet, create_api_key, create_device,
    create_user, persistent_connect, publish_packet,
};
use crate::telemetry_util::{
    chunks_sealed, ingest, ingest_event, ingest_ok, metric, now_ms, publish1_ack, reason_string,
    refused_total, restart, sealing_quickly, wait_sealed,
};
use crate::util::{Api, Server, ServerBuilder, tenant_with_owner};

const OWNER: &str = "owner@t1.example";
const OWNER_PASSWORD: &str = "owner-password";
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// Publishes a retained message at QoS 1; asserts it was accepted.
async fn retain(raw: &mut Raw, packet_id: u16, topic: &str, payload: &[u8]) {
    let mut p = publish_packet(topic, payload, QoS::AtLeastOnce, Some(packet_id));
    p.retain = true;
    raw.send(Packet::Publish(p)).await;
    match raw.recv().await {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Leaves device `device`'s persistent session (client id `device-s`)
/// subscribed to its commands, with one command queued while it is away.
async fn session_with_queued_command(s: &Server, device: &str, token: &str, commander: &mut Raw) {
    let (mut dev, ack, _) = Raw::connect(
        &s.mqtt,
        persistent_connect(V5, &format!("{device}-s"), token, "-", true),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let filter = format!("devices/{device}/commands/#");
    assert_eq!(
        dev.subscribe(1, &[(filter.as_str(), QoS::AtLeastOnce)])
            .await,
        [ReasonCode::GRANTED_QOS_1]
    );
    dev.send(Packet::Disconnect(ferrule_mqtt::codec::Disconnect::new(
        ReasonCode::SUCCESS,
    )))
    .await;
    dev.expect_close().await;
    let topic = format!("devices/{device}/commands/reboot");
    assert_eq!(
        commander.publish1(7, &topic, b"now").await,
        ReasonCode::SUCCESS
    );
}

/// Connects as `device` resuming its session (client id `device-s`, clean
/// start 0; the session ends with this connection); returns whether one was
/// present, after checking that nothing queued or retained arrives.
async fn resumed_session_present(s: &Server, device: &str, token: &str) -> bool {
    let mut c = connect_packet(V5, &format!("{device}-s"), Some(token), None);
    c.clean_start = false;
    let (mut raw, ack, _) = Raw::connect(&s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
    let filter = format!("devices/{device}/#");
    raw.subscribe(1, &[(filter.as_str(), QoS::AtLeastOnce)])
        .await;
    raw.expect_silence(QUIET).await;
    ack.session_present
}

/// The retained messages a subscription to `filter` gets, as topics.
async fn retained_topics(raw: &mut Raw, packet_id: u16, filter: &str) -> Vec<String> {
    raw.subscribe(packet_id, &[(filter, QoS::AtMostOnce)]).await;
    let mut topics = Vec::new();
    loop {
        match raw.next(QUIET).await {
            crate::mqtt_util::Event::Packet(Packet::Publish(p), _) => {
                topics.push(p.topic.as_str().to_owned());
            }
            crate::mqtt_util::Event::Silent => break,
            other => panic!("expected retained messages, got {other:?}"),
        }
    }
    topics.sort();
    topics
}

/// Asserts that device `device` has no telemetry, latest values, keys or
/// events, however asked.
async fn assert_no_data(api: &Api, device: &str) {
    let history = api
        .get(&format!("/api/v1/devices/{device}/telemetry?limit=1000"))
        .await;
    assert_eq!(
        (history.status, &history.json),
        (200, &json!({})),
        "{device}: {}",
        history.text
    );
    for (path, empty) in [
        (
            format!("/api/v1/devices/{device}/telemetry/latest"),
            json!({}),
        ),
        (
            format!("/api/v1/devices/{device}/telemetry/keys"),
            json!([]),
        ),
    ] {
        let r = api.get(&path).await;
        assert_eq!((r.status, &r.json), (200, &empty), "{path}: {}", r.text);
    }
    let events = api.get(&format!("/api/v1/devices/{device}/events")).await;
    assert_eq!(events.status, 200, "{}", events.text);
    // The new device's own connections (`resumed_session_present`, client
    // `{device}-s`) are logged; nothing of the deleted one's may be.
    let own_client = format!("{device}-s");
    let left: Vec<&serde_json::Value> = events.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !(e["type"] == "connectivity" && e["payload"]["client_id"] == own_client))
        .collect();
    assert!(left.is_empty(), "{}", events.text);
    assert_no_data_across(api, device).await;
}

/// The tenant-wide reads, which need no device: one key across devices,
/// and the export.
async fn assert_no_data_across(api: &Api, device: &str) {
    let across = api
        .get(&format!(
            "/api/v1/telemetry?key=temp&devices={device}&limit=1000"
        ))
        .await;
    assert_eq!(
        (across.status, &across.json),
        (200, &json!({})),
        "{}",
        across.text
    );
    let export = api.get("/api/v1/export").await;
    assert_eq!(export.status, 200);
    let mine = format!("\"device\":\"{device}\"");
    // As in `assert_no_data`: the new device's own connections may show.
    let own_client = format!("\"client_id\":\"{device}-s\"");
    assert!(
        !export
            .text
            .lines()
            .any(|l| l.contains(&mine) && !l.contains(&own_client)),
        "export still has {device}: {}",
        export.text
    );
}

/// Everything of a new tenant `t1` is empty.
async fn assert_tenant_empty(admin: &Api) {
    let t1 = admin.clone().with_header("X-Tenant", "t1");
    for path in ["/api/v1/users", "/api/v1/api-keys", "/api/v1/devices"] {
        let r = t1.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(r.json["items"], json!([]), "{path}: {}", r.text);
    }
    let rules = t1.get("/api/v1/acl-rules").await;
    assert_eq!(rules.status, 200, "{}", rules.text);
    let rules = rules.json.get("items").unwrap_or(&rules.json).clone();
    assert_eq!(rules, json!([]));
    let settings = t1.get("/api/v1/telemetry/settings").await;
    assert_eq!(settings.status, 200, "{}", settings.text);
    for field in ["retention_days", "disk_budget_bytes"] {
        assert_eq!(
            settings.json[field],
            Value::Null,
            "{field}: {}",
            settings.text
        );
    }
    assert_eq!(settings.json["disk_bytes"], 0, "{}", settings.text);
    assert_no_data_across(&t1, "pump").await;
}

/// Sealed points (in chunks), events, then recent points still in memory.
async fn telemetry_of_every_kind(s: &Server, token: &str) {
    let t0 = now_ms() - 3_600_000;
    let old: Vec<Value> = (0..50)
        .map(|i| json!({"ts": t0 + i * 1000, "values": {"temp": i, "on": i % 2 == 0}}))
        .collect();
    let sealed = chunks_sealed(s).await;
    ingest_ok(s, token, serde_json::to_vec(&old).unwrap()).await;
    wait_sealed(s, sealed + 2.0).await;
    assert_eq!(
        ingest_event(s, token, "boot", b"{\"fw\": 1}").await.status,
        204
    );
    ingest_ok(s, token, br#"{"temp": 99}"#).await;
}

/// Device `pump` (by `token`) retains its state, `online`.
async fn retain_pump_state(s: &Server, token: &str) {
    let mut dev = Raw::login(&s.mqtt, V5, "pump-r", token, None).await;
    retain(&mut dev, 1, "devices/pump/state", b"online").await;
}

/// Asserts that deleted device `pump` lost its live connection (closed
/// with 0x98) and that its `token` works neither over HTTP nor over MQTT.
async fn assert_pump_cut_off(s: &Server, live: &mut Raw, token: &str) {
    let closed = live.expect_close().await;
    assert!(
        matches!(closed.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ADMINISTRATIVE_ACTION),
        "expected DISCONNECT 0x98, got {closed:?}"
    );
    assert_eq!(ingest(s, token, br#"{"temp": 1}"#).await.status, 401);
    let (_, ack, _) = Raw::connect(&s.mqtt, connect_packet(V5, "again", Some(token), None)).await;
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

/// Creates tenant `t1` again under the same id, asserts it starts empty,
/// and returns the admin's client for it.
async fn tenant_created_again(admin: &Api) -> Api {
    let again = admin
        .post("/api/v1/tenants", json!({"id": "t1", "name": "t1"}))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_tenant_empty(admin).await;
    admin.clone().with_header("X-Tenant", "t1")
}

/// Asserts that the new owner of `t1` (created with [`create_user`]) gets
/// no retained message at all.
async fn assert_owner_sees_no_retained(s: &Server) {
    let mut ops = Raw::login(
        &s.mqtt,
        V5,
        "ops",
        &format!("user:{OWNER}"),
        Some("owner-password-123"),
    )
    .await;
    assert_eq!(
        retained_topics(&mut ops, 1, "#").await,
        Vec::<String>::new()
    );
}

/// An MQTT connection of the admin, who sees the whole default tenant.
async fn admin_observer(s: &Server) -> Raw {
    let (user, password) = crate::mqtt_util::admin_login();
    Raw::login(&s.mqtt, V5, "obs", &user, Some(&password)).await
}

/// Asserts that device `valve`, next to the deleted one, kept its telemetry.
async fn assert_valve_kept(admin: &Api) {
    let valve_temp = admin.get("/api/v1/devices/valve/telemetry/latest").await;
    assert_eq!(valve_temp.json["temp"]["value"], 5, "{}", valve_temp.text);
}

/// Kills the server before its background purge ran; returns the path of
/// `telemetry.db`, after checking that the purged rows are still in it.
async fn kill_before_the_purge(s: &mut Server) -> std::path::PathBuf {
    s.signal(Signal::SIGKILL);
    s.wait_exit().await;
    let db = s.data_dir.join("telemetry.db");
    assert!(
        leftovers(&db) > 0,
        "the kill came before the rows were deleted"
    );
    db
}

#[tokio::test]
async fn a_deleted_tenant_leaves_nothing_and_a_new_one_starts_empty() {
    let s = sealing_quickly().start().await;
    let admin = s.admin().await;
    let owner = tenant_with_owner(&s, &admin, "t1").await;
    let (_, user_password) = create_user(&owner, "ed@t1.example", "editor").await;
    let (_, key_secret) = create_api_key(&owner, "editor").await;
    let pump = create_device(&owner, "pump").await;
    add_device_password(&owner, "pump", "pump-password-1").await;
    let rule = owner
        .post(
            "/api/v1/acl-rules",
            json!({"effect": "allow", "action": "publish", "topic": "devices/+/telemetry", "subject": "devices"}),
        )
        .await;
    assert_eq!(rule.status, 201, "{}", rule.text);
    let settings = owner
        .send(
            Method::PUT,
            "/api/v1/telemetry/settings",
            Some(json!({"retention_days": 30, "disk_budget_bytes": 1_000_000_000u64})),
        )
        .await;
    assert_eq!(settings.status, 200, "{}", settings.text);
    telemetry_of_every_kind(&s, &pump).await;
    let mut ops = Raw::login(
        &s.mqtt,
        V5,
        "ops",
        &format!("user:{OWNER}"),
        Some(OWNER_PASSWORD),
    )
    .await;
    retain(&mut ops, 1, "alerts/fire", b"on").await;
    retain_pump_state(&s, &pump).await;
    session_with_queued_command(&s, "pump", &pump, &mut ops).await;
    let mut live = Raw::login(&s.mqtt, V5, "pump-live", "pump@t1", Some("pump-password-1")).await;

    let default = admin.delete("/api/v1/tenants/default").await;
    default.assert_problem(409);
    assert!(
        default.json["detail"].as_str().unwrap().contains("admins"),
        "says why: {}",
        default.text
    );
    let deleted = admin.delete("/api/v1/tenants/t1").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);

    // Its connections are closed, and none of its secrets works any more.
    assert_pump_cut_off(&s, &mut live, &pump).await;
    owner.get("/api/v1/devices").await.assert_problem(401);
    s.api(&key_secret)
        .get("/api/v1/devices")
        .await
        .assert_problem(401);
    for (email, password) in [
        (OWNER, OWNER_PASSWORD),
        ("ed@t1.example", user_password.as_str()),
    ] {
        let login = s
            .anon()
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password}),
            )
            .await;
        login.assert_problem(401);
    }

    // Created again under the same id: empty, however it is looked at.
    let t1 = tenant_created_again(&admin).await;
    let (_, _) = create_user(&t1, OWNER, "owner").await;
    let pump = create_device(&t1, "pump").await;
    assert_no_data(&t1, "pump").await;
    assert!(!resumed_session_present(&s, "pump", &pump).await);
    assert_owner_sees_no_retained(&s).await;

    // And so it stays across a restart.
    let (s, _old_dir) = restart(s, Signal::SIGTERM, sealing_quickly()).await;
    let admin = s.admin().await;
    let t1 = admin.clone().with_header("X-Tenant", "t1");
    assert_no_data(&t1, "pump").await;
    assert!(!resumed_session_present(&s, "pump", &pump).await);
    assert_owner_sees_no_retained(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn a_kill_in_the_middle_of_a_tenants_purge_brings_nothing_back_and_the_purge_resumes() {
    // The background purge does not start: the kill finds the telemetry
    // detached but every row still on disk.
    let s = sealing_quickly()
        .env("FERRULE_TELEMETRY_PURGE_INTERVAL", "1h")
        .start()
        .await;
    let admin = s.admin().await;
    let owner = tenant_with_owner(&s, &admin, "t1").await;
    let pump = create_device(&owner, "pump").await;
    telemetry_of_every_kind(&s, &pump).await;
    assert_eq!(admin.delete("/api/v1/tenants/t1").await.status, 204);
    assert!(metric(&s, "ferrule_telemetry_purge_pending").await > 0.0);

    let mut s = s;
    let db = kill_before_the_purge(&mut s).await;
    let (dir, data) = (s.dir, s.data_dir);
    let s = sealing_quickly().data_dir(data).start().await;
    let admin = s.admin().await;
    let t1 = tenant_created_again(&admin).await;
    create_device(&t1, "pump").await;
    assert_no_data(&t1, "pump").await;
    // The purge resumed and finished.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leftovers(&db) > 0 || metric(&s, "ferrule_telemetry_purge_pending").await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "purge did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_no_data(&t1, "pump").await;
    s.stop().await;
    drop(dir);
}

/// Rows of deleted devices and tenants still in `telemetry.db`: chunks of
/// purged series and events below a purge's horizon (0 when the purge
/// tables do not exist, as before they did).
fn leftovers(db: &std::path::Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open telemetry.db");
    conn.query_row(
        "SELECT (SELECT count(*) FROM chunks WHERE series IN (SELECT id FROM purged_series))
              + (SELECT count(*) FROM events e JOIN purged_events p ON e.tenant = p.tenant
                   AND (p.device = '' OR e.device = p.device) AND e.id <= p.last_id)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[tokio::test]
async fn a_deleted_device_leaves_nothing_and_a_new_one_starts_empty() {
    let w = World::with(sealing_quickly()).await;
    let (s, admin) = (&w.s, &w.admin);
    let valve = create_device(admin, "valve").await;
    telemetry_of_every_kind(s, &w.pump).await;
    ingest_ok(s, &valve, br#"{"temp": 5}"#).await;
    let mut obs = w.observer().await;
    // Its topic space, and around it.
    retain(&mut obs, 1, "devices/pump/config", b"{}").await;
    retain(&mut obs, 2, "devices/pumpkin/state", b"x").await;
    retain(&mut obs, 3, "devices/valve/state", b"x").await;
    retain_pump_state(s, &w.pump).await;
    session_with_queued_command(s, "pump", &w.pump, &mut obs).await;
    // A retained last will: a deleted device announces nothing.
    let mut c = connect_packet(V5, "pump-live", Some(&w.pump), None);
    c.will = Some(ferrule_mqtt::codec::Will {
        topic: crate::mqtt_util::s("devices/pump/status"),
        payload: b"offline".to_vec().into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    let (mut live, ack, _) = Raw::connect(&s.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);

    // Telemetry of a device that does not exist is refused, not kept for
    // whoever gets that id.
    let before = refused_total(s, "unknown_device").await;
    let ack = publish1_ack(&mut obs, 10, "devices/ghost/telemetry", br#"{"temp": 1}"#).await;
    assert_eq!(ack.reason_code, ReasonCode::TOPIC_NAME_INVALID, "{ack:?}");
    assert!(reason_string(&ack).contains("no such device"), "{ack:?}");
    let ack = publish1_ack(&mut obs, 11, "devices/ghost/events/boot", b"{}").await;
    assert_eq!(ack.reason_code, ReasonCode::TOPIC_NAME_INVALID, "{ack:?}");
    assert_eq!(refused_total(s, "unknown_device").await, before + 2.0);

    let deleted = admin.delete("/api/v1/devices/pump").await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_pump_cut_off(s, &mut live, &w.pump).await;
    // Its id gathers nothing until it is created again.
    let ack = publish1_ack(&mut obs, 12, "devices/pump/telemetry", br#"{"temp": 1}"#).await;
    assert_eq!(ack.reason_code, ReasonCode::TOPIC_NAME_INVALID, "{ack:?}");
    assert_no_data_across(admin, "pump").await;

    let pump = create_device(admin, "pump").await;
    create_device(admin, "ghost").await;
    for device in ["pump", "ghost"] {
        assert_no_data(admin, device).await;
    }
    assert!(!resumed_session_present(s, "pump", &pump).await);
    let left = ["devices/pumpkin/state", "devices/valve/state"];
    assert_eq!(retained_topics(&mut obs, 20, "devices/#").await, left);
    assert_valve_kept(admin).await;
    drop(obs);

    let (s, _old_dir) = restart(w.s, Signal::SIGTERM, sealing_quickly()).await;
    let admin = s.admin().await;
    assert_no_data(&admin, "pump").await;
    assert!(!resumed_session_present(&s, "pump", &pump).await);
    let mut obs = admin_observer(&s).await;
    assert_eq!(retained_topics(&mut obs, 1, "devices/#").await, left);
    assert_valve_kept(&admin).await;
    s.stop().await;
}

#[tokio::test]
async fn a_device_deleted_in_the_middle_of_its_purge_stays_deleted_across_a_kill() {
    let w = World::with(sealing_quickly().env("FERRULE_TELEMETRY_PURGE_INTERVAL", "1h")).await;
    telemetry_of_every_kind(&w.s, &w.pump).await;
    assert_eq!(w.admin.delete("/api/v1/devices/pump").await.status, 204);
    let mut s = w.s;
    kill_before_the_purge(&mut s).await;
    let (_dir, data) = (s.dir, s.data_dir);
    let s = ServerBuilder::new().data_dir(data).start().await;
    let admin = s.admin().await;
    create_device(&admin, "pump").await;
    assert_no_data(&admin, "pump").await;
    s.stop().await;
}

#[tokio::test]
async fn a_deletion_interrupted_by_a_crash_finishes_at_start() {
    let w = World::with(sealing_quickly()).await;
    telemetry_of_every_kind(&w.s, &w.pump).await;
    retain_pump_state(&w.s, &w.pump).await;
    let (dir, data) = w.s.stop_keep_dir().await;
    // What the deleting transaction does, then a crash before the other
    // stores were done — and a late write of the broker's state that
    // brought its retained message back.
    {
        let meta = rusqlite::Connection::open(data.join("meta.db")).expect("open meta.db");
        meta.execute_batch(
            "PRAGMA foreign_keys = ON;
             BEGIN;
             DELETE FROM devices WHERE tenant = 'default' AND id = 'pump';
             DELETE FROM mqtt_sessions WHERE tenant = 'default' AND owner = 'device:pump';
             INSERT INTO pending_deletions (tenant, device) VALUES ('default', 'pump');
             COMMIT;",
        )
        .expect("simulate the deleting transaction");
    }
    let s = sealing_quickly().data_dir(data).start().await;
    let admin = s.admin().await;
    create_device(&admin, "pump").await;
    assert_no_data(&admin, "pump").await;
    let mut obs = admin_observer(&s).await;
    assert_eq!(
        retained_topics(&mut obs, 1, "devices/#").await,
        Vec::<String>::new()
    );
    s.stop().await;
    drop(dir);
}

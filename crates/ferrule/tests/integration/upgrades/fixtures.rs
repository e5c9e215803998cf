//! Every committed fixture (`tests/fixtures/meta-vN.sql`,
//! `telemetry-vN.sql`, written by `make_fixtures.py`) is a data directory as
//! a release left it. Each opens in this release: it is backed up before
//! its migrations, migrated, and what it held reads back through the API
//! and over MQTT. A schema version without a fixture fails the test.

use std::path::{Path, PathBuf};

use ferrule_mqtt::codec::{QoS, ReasonCode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{check, user_version};
use crate::apps::open;
use crate::console::Browser;
use crate::mqtt_util::{Raw, V5, persistent_connect};
use crate::util::{Api, Server, ServerBuilder};

const META_CURRENT: u32 = ferrule_store::embedded::SCHEMA_VERSION;
const TELEMETRY_CURRENT: u32 = ferrule_store::telemetry::embedded::SCHEMA_VERSION;

// What the fixtures hold (see make_fixtures.py, which has the same values).
const PASSWORD: &str = "67756c778c174db8d579d8ad";
const PUMP_TOKEN: &str = "fd_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const BOILER_TOKEN: &str = "fd_fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const KEY_SECRET: &str = "fk_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const REVOKED_KEY_SECRET: &str =
    "fk_7777777777777777777777777777777777777777777777777777777777777777";
const EXPORT_KEY_SECRET: &str =
    "fk_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const APP_KEY_SECRET: &str = "fk_5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const SESSION_TOKEN: &str = "fs_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const SHARE_TOKEN: &str = "fv_a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";
const COMMAND_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
/// The window holding every fixture's telemetry and events.
const WINDOW: &str = "from=2026-11-30T00:00:00Z&to=2026-12-02T00:00:00Z";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The SQL of `NAME-vVERSION.sql`; a missing one fails with what to do.
fn fixture(name: &str, version: u32, current: u32) -> String {
    let path = fixture_dir().join(format!("{name}-v{version}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{name}.db schema version {version} (this release's is {current}) has no upgrade \
             fixture at {}: {e}. Add the rows of the new tables to make_fixtures.py, run \
             `python3 crates/ferrule/tests/fixtures/make_fixtures.py` and commit the file it \
             writes",
            path.display()
        )
    })
}

fn load(db: &Path, sql: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(sql)
        .unwrap_or_else(|e| panic!("loading {}: {e}", db.display()));
}

/// One server start: a meta fixture and, for the newest meta versions, a
/// telemetry fixture (telemetry version T rides with meta version
/// `META_CURRENT - (TELEMETRY_CURRENT - T)`, so that the newest of both
/// open together and the older telemetry meets a meta.db that knows its
/// device).
#[derive(Debug, Clone, Copy)]
struct Case {
    meta: u32,
    telemetry: Option<u32>,
}

fn cases() -> Vec<Case> {
    (1..=META_CURRENT)
        .map(|meta| Case {
            meta,
            telemetry: (meta + TELEMETRY_CURRENT)
                .checked_sub(META_CURRENT)
                .filter(|t| *t >= 1),
        })
        .collect()
}

#[tokio::test]
async fn every_released_schema_opens_and_reads_back() {
    let cases = cases();
    // Every version of each database has its fixture (read before any
    // server starts, so a missing one fails at once).
    let sql: Vec<(String, Option<String>)> = cases
        .iter()
        .map(|c| {
            (
                fixture("meta", c.meta, META_CURRENT),
                c.telemetry
                    .map(|t| fixture("telemetry", t, TELEMETRY_CURRENT)),
            )
        })
        .collect();
    let covered: Vec<u32> = cases.iter().filter_map(|c| c.telemetry).collect();
    assert_eq!(
        covered,
        (1..=TELEMETRY_CURRENT).collect::<Vec<_>>(),
        "every telemetry fixture rides with a meta fixture: pair them another way"
    );

    // One server per fixture, all at once: each waits mostly on its own
    // start and password hashes.
    futures::future::join_all(
        cases
            .into_iter()
            .zip(sql)
            .map(|(case, (meta, telemetry))| open_and_read_back(case, meta, telemetry)),
    )
    .await;
}

async fn open_and_read_back(case: Case, meta_sql: String, telemetry_sql: Option<String>) {
    let Case { meta, telemetry } = case;
    let b = ServerBuilder::new();
    let data = b.dir().join("data");
    std::fs::create_dir_all(&data).unwrap();
    load(&data.join("meta.db"), &meta_sql);
    if let Some(sql) = &telemetry_sql {
        load(&data.join("telemetry.db"), sql);
    }
    assert_eq!(user_version(&data.join("meta.db")), meta);

    let (code, text) = check(&data).await;
    assert_eq!(code, Some(0), "{case:?}: {text}");
    assert!(
        text.contains(&format!("schema {meta}, this binary {META_CURRENT}")),
        "{case:?}: {text}"
    );
    if let Some(t) = telemetry {
        assert!(
            text.contains(&format!(
                "telemetry.db  schema {t}, this binary {TELEMETRY_CURRENT}"
            )),
            "{case:?}: {text}"
        );
    }

    let s = b.random_admin_password().start().await;
    let needs_migration = meta < META_CURRENT || telemetry.is_some_and(|t| t < TELEMETRY_CURRENT);
    assert_backup(&s, &data, case, needs_migration);

    read_back_meta(&s, meta).await;
    if let Some(t) = telemetry {
        read_back_telemetry(&s, t).await;
    }
    // Last: a device connecting changes what the API shows (its pending
    // command is delivered).
    read_back_over_mqtt(&s, meta).await;

    let (_keep, data) = s.stop_keep_dir().await;
    assert_eq!(
        user_version(&data.join("meta.db")),
        META_CURRENT,
        "{case:?}"
    );
    if telemetry.is_some() {
        assert_eq!(
            user_version(&data.join("telemetry.db")),
            TELEMETRY_CURRENT,
            "{case:?}"
        );
    }
}

/// The automatic backup beside the data dir: one for a fixture that needed
/// a migration, none for one that did not.
fn assert_backup(s: &Server, data: &Path, case: Case, needed: bool) {
    let prefix = format!(
        "data.pre-migration-v{}.{}-",
        case.meta,
        case.telemetry.unwrap_or(0)
    );
    let beside: Vec<String> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let backups = beside
        .iter()
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".ferrule-backup"))
        .count();
    assert_eq!(backups, usize::from(needed), "{case:?}: {beside:?}");
    assert_eq!(
        s.stderr().contains("pre-migration backup written"),
        needed,
        "{case:?}: {}",
        s.stderr()
    );
}

fn ok(r: crate::util::Resp, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {}", r.text);
    r.json
}

/// The entries of a list answer: a page (`items`) or a plain array.
fn items(list: &Value) -> &Vec<Value> {
    list.as_array()
        .or_else(|| list["items"].as_array())
        .unwrap_or_else(|| panic!("a list: {list}"))
}

fn ids(list: &Value) -> Vec<&str> {
    items(list)
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default())
        .collect()
}

/// What each meta version added reads back (`meta-v4.sql`, from before
/// make_fixtures.py wrote rows for every table, holds only device `pump`).
async fn read_back_meta(s: &Server, meta: u32) {
    let v = |what: &str| format!("meta v{meta}: {what}");
    // Version 1: both users log in with their password, in their tenants.
    let owner = s.api(&s.login("owner@acme.example", PASSWORD).await);
    let me = ok(owner.get("/api/v1/auth/me").await, &v("me"));
    assert_eq!(me["tenant"], "acme", "{}", v("owner's tenant"));
    let admin = s.api(&s.login("admin@localhost", PASSWORD).await);
    assert_eq!(
        ok(admin.get("/api/v1/auth/me").await, &v("admin"))["role"],
        "admin"
    );
    if meta == 4 {
        let pump = ok(owner.get("/api/v1/devices/pump").await, &v("pump"));
        assert_eq!(pump["name"], "Pump", "{}", v("pump"));
    }
    if meta < 2 || meta == 4 {
        return;
    }

    // Version 2: a login session, API keys (one revoked), devices in both
    // tenants and their credentials.
    let session = s.api(SESSION_TOKEN);
    assert_eq!(
        ok(session.get("/api/v1/auth/me").await, &v("session"))["id"],
        "u_0000000000000002"
    );
    let key = s.api(KEY_SECRET);
    let devices = ok(key.get("/api/v1/devices").await, &v("devices by key"));
    assert!(
        ids(&devices).contains(&"pump"),
        "{}: {devices}",
        v("devices")
    );
    let pump = ok(key.get("/api/v1/devices/pump").await, &v("pump"));
    assert_eq!(pump["name"], "Pump");
    assert_eq!(pump["attributes"], json!({"site": "north", "floor": 2}));
    assert_eq!(
        s.api(REVOKED_KEY_SECRET)
            .get("/api/v1/devices")
            .await
            .status,
        401,
        "{}",
        v("revoked key")
    );
    let boiler = ok(admin.get("/api/v1/devices/boiler").await, &v("boiler"));
    assert_eq!(boiler["name"], "Boiler");
    let creds = ok(
        owner.get("/api/v1/devices/pump/credentials").await,
        &v("credentials"),
    );
    let mut kinds: Vec<&str> = items(&creds)
        .iter()
        .map(|c| c["type"].as_str().unwrap_or_default())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["token", "x509"], "{}: {creds}", v("credentials"));

    // Version 3: the tenant's ACL rule (its effect is tried over MQTT).
    if meta >= 3 {
        let rules = ok(owner.get("/api/v1/acl-rules").await, &v("acl rules"));
        assert_eq!(ids(&rules), ["acl_fleet"], "{}: {rules}", v("acl rules"));
    }
    // Version 4's sessions and retained messages are read over MQTT.

    // Version 5: who made a key.
    if meta >= 5 {
        let keys = ok(owner.get("/api/v1/api-keys").await, &v("api keys"));
        let export = items(&keys)
            .iter()
            .find(|k| k["name"] == "nightly-export")
            .unwrap_or_else(|| panic!("{}: {keys}", v("nightly-export")));
        assert_eq!(export["created_by"], "u_0000000000000002", "{export}");
        ok(
            s.api(EXPORT_KEY_SECRET).get("/api/v1/devices").await,
            &v("export key"),
        );
    }
    // Version 6: the pending deletion was finished at start, so the id is
    // free again.
    if meta >= 6 {
        assert!(
            s.stderr().contains("resuming an unfinished deletion"),
            "{}: {}",
            v("resume"),
            s.stderr()
        );
        let r = owner
            .post("/api/v1/devices", json!({"id": "old-sensor"}))
            .await;
        assert_eq!(r.status, 201, "{}: {}", v("old-sensor again"), r.text);
    }
    if meta >= 7 {
        read_back_device_state(&owner, meta).await;
    }
    if meta >= 8 {
        read_back_rules_and_alarms(&owner, meta).await;
    }
    // Version 9: the dashboard and its share link.
    if meta >= 9 {
        let d = ok(owner.get("/api/v1/dashboards/plant").await, &v("dashboard"));
        assert_eq!(d["name"], "Plant floor", "{d}");
        assert_eq!(d["widgets"][0]["title"], "Temperature", "{d}");
        let shared = ok(
            s.anon()
                .get(&format!("/api/v1/shared/dashboards/{SHARE_TOKEN}"))
                .await,
            &v("shared dashboard"),
        );
        assert_eq!(shared["name"], "Plant floor", "{shared}");
    }
    // Version 10: the app, its page, and its key.
    if meta >= 10 {
        let app = ok(owner.get("/api/v1/apps/hello").await, &v("app"));
        assert_eq!(app["name"], "Hello board", "{app}");
        // In a console user's browser: the page, and the app's key handed
        // to it, which reads the tenant's devices.
        let mut browser = Browser::new(s);
        let login = browser.login("owner@acme.example", PASSWORD, "/").await;
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
        let (_, page) = open(s, &mut browser, "/apps/acme/hello/").await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{}: {}",
            v("app page"),
            page.body
        );
        assert!(page.body.contains("Hello from a fixture"), "{}", page.body);
        let (_, settings) = open(s, &mut browser, "/apps/acme/hello/ferrule.json").await;
        let settings: Value = serde_json::from_str(&settings.body).unwrap();
        assert_eq!(settings["token"], APP_KEY_SECRET, "{settings}");
        ok(
            s.api(APP_KEY_SECRET).get("/api/v1/devices").await,
            &v("app key"),
        );
    }
}

/// Version 7: pump's twin and history, its pending command and
/// connectivity, and profile `thermostat` with its device.
async fn read_back_device_state(owner: &Api, meta: u32) {
    let v = |what: &str| format!("meta v{meta}: {what}");
    let twin = ok(owner.get("/api/v1/devices/pump/state").await, &v("twin"));
    assert_eq!(twin["desired"], json!({"interval": 30}), "{twin}");
    assert_eq!(
        twin["reported"],
        json!({"fw": "1.3.0", "rpm": 1450}),
        "{twin}"
    );
    assert_eq!(twin["delta"], json!({"interval": 30}), "{twin}");
    let history = ok(
        owner.get("/api/v1/devices/pump/state/history").await,
        &v("twin history"),
    );
    assert_eq!(items(&history).len(), 2, "{history}");
    let command = ok(
        owner
            .get(&format!("/api/v1/devices/pump/commands/{COMMAND_ID}"))
            .await,
        &v("command"),
    );
    assert_eq!(command["name"], "reboot", "{command}");
    assert_eq!(command["state"], "pending", "{command}");
    assert_eq!(command["params"], json!({"delay_s": 5}), "{command}");
    let pump = ok(owner.get("/api/v1/devices/pump").await, &v("pump"));
    assert_eq!(pump["online"], false, "{pump}");
    assert_eq!(pump["client_address"], "192.0.2.7:50123", "{pump}");
    let profile = ok(
        owner.get("/api/v1/device-profiles/thermostat").await,
        &v("profile"),
    );
    assert_eq!(profile["description"], "Room thermostats", "{profile}");
    assert_eq!(profile["defaults"], json!({"max_temp": 80}), "{profile}");
    let thermo = ok(owner.get("/api/v1/devices/thermo-1").await, &v("thermo-1"));
    assert_eq!(thermo["profile"], "thermostat", "{thermo}");
}

/// Version 8: the rules, a dead letter, and an alarm.
async fn read_back_rules_and_alarms(owner: &Api, meta: u32) {
    let v = |what: &str| format!("meta v{meta}: {what}");
    let rule = ok(owner.get("/api/v1/rules/overheat").await, &v("rule"));
    assert_eq!(
        rule["sql"], "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 80",
        "{rule}"
    );
    assert_eq!(rule["enabled"], true, "{rule}");
    let notify = ok(owner.get("/api/v1/rules/notify").await, &v("rule notify"));
    assert_eq!(notify["enabled"], false, "{notify}");
    let letters = ok(
        owner.get("/api/v1/rules/notify/dead-letters").await,
        &v("dead letters"),
    );
    assert_eq!(
        items(&letters)[0]["error"],
        "connection refused",
        "{letters}"
    );
    let alarms = ok(owner.get("/api/v1/alarms").await, &v("alarms"));
    let alarm = &items(&alarms)[0];
    assert_eq!(alarm["type"], "overheat", "{alarms}");
    assert_eq!(alarm["device"], "pump", "{alarms}");
    assert_eq!(alarm["state"], "active", "{alarms}");
    assert_eq!(alarm["severity"], "major", "{alarms}");
}

/// The telemetry of acme/pump: points in the recent log (numbers, and from
/// version 2 strings), an event, retention and budgets.
async fn read_back_telemetry(s: &Server, telemetry: u32) {
    let v = |what: &str| format!("telemetry v{telemetry}: {what}");
    let owner = s.api(&s.login("owner@acme.example", PASSWORD).await);
    let keys = if telemetry >= 2 { "temp,fw" } else { "temp" };
    let points = ok(
        owner
            .get(&format!(
                "/api/v1/devices/pump/telemetry?keys={keys}&{WINDOW}"
            ))
            .await,
        &v("points"),
    );
    let mut temp = vec![
        json!({"ts": 1_796_083_200_000_i64, "value": 21.5}),
        json!({"ts": 1_796_083_260_000_i64, "value": 22.25}),
    ];
    if telemetry >= 2 {
        // Sealed into a chunk before the log's points.
        temp.splice(
            0..0,
            [
                json!({"ts": 1_796_040_000_000_i64, "value": 20.25}),
                json!({"ts": 1_796_040_060_000_i64, "value": 20.5}),
            ],
        );
    }
    assert_eq!(points["temp"], json!(temp), "{}: {points}", v("temp"));
    if telemetry < 2 {
        return;
    }
    assert_eq!(
        points["fw"],
        json!([
            {"ts": 1_796_083_200_000_i64, "value": "1.2.0"},
            {"ts": 1_796_083_260_000_i64, "value": "1.3.0"}
        ]),
        "{}: {points}",
        v("fw")
    );
    let events = ok(
        owner
            .get(&format!("/api/v1/devices/pump/events?{WINDOW}"))
            .await,
        &v("events"),
    );
    assert_eq!(items(&events)[0]["type"], "door", "{events}");
    let settings = ok(
        owner.get("/api/v1/telemetry/settings").await,
        &v("settings"),
    );
    assert_eq!(settings["retention_days"], 36500, "{settings}");
    // Version 2's budget was an admin's: version 3 made it a ceiling.
    assert_eq!(
        settings["disk_budget_ceiling_bytes"], 1_000_000_000,
        "{settings}"
    );
    let own = if telemetry >= 3 {
        json!(500_000_000)
    } else {
        Value::Null
    };
    assert_eq!(settings["disk_budget_bytes"], own, "{settings}");
}

/// Device pump's token connects; from version 4 its persistent session
/// comes back with its queued message and the retained status, from
/// version 3 the ACL rule lets it subscribe to `fleet/#`, and from
/// version 7 its pending command is delivered.
async fn read_back_over_mqtt(s: &Server, meta: u32) {
    if meta < 2 || meta == 4 {
        return;
    }
    let v = |what: &str| format!("meta v{meta}: {what}");
    let (mut pump, ack, _) = Raw::connect(
        &s.mqtt,
        persistent_connect(V5, "pump", PUMP_TOKEN, "", false),
    )
    .await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::SUCCESS,
        "{}: {ack:?}",
        v("connect")
    );
    assert_eq!(ack.session_present, meta >= 4, "{}", v("session present"));

    let mut expected: Vec<&str> = Vec::new();
    if meta >= 4 {
        expected.push("devices/pump/commands/note");
    }
    if meta >= 7 {
        expected.push("devices/pump/commands/reboot");
    }
    let mut got: Vec<(String, Vec<u8>)> = Vec::new();
    while got.len() < expected.len() {
        let p = pump.recv_publish().await;
        if let Some(id) = p.packet_id {
            pump.puback(id).await;
        }
        got.push((p.topic.to_string(), p.payload.to_vec()));
    }
    let mut topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, expected, "{}", v("queued for pump"));
    if meta >= 4 {
        let note = got
            .iter()
            .find(|(t, _)| t.ends_with("/note"))
            .map(|(_, p)| p.as_slice());
        assert_eq!(note, Some(&b"check the seals"[..]), "{}", v("note"));
    }

    let fleet = pump.subscribe(1, &[("fleet/#", QoS::AtMostOnce)]).await;
    let granted = fleet == [ReasonCode::SUCCESS];
    assert_eq!(
        granted,
        meta >= 3,
        "{}: {fleet:?}",
        v("fleet/# by the ACL rule")
    );
    if meta >= 4 {
        let codes = pump
            .subscribe(2, &[("devices/pump/status", QoS::AtMostOnce)])
            .await;
        assert_eq!(codes, [ReasonCode::SUCCESS], "{}", v("status"));
        let retained = pump.recv_publish().await;
        assert!(retained.retain, "{}", v("retained flag"));
        assert_eq!(&retained.payload[..], b"online", "{}", v("retained"));
    }
    drop(pump);

    // Tenant `default`'s device connects too.
    let (_boiler, ack, _) = Raw::connect(
        &s.mqtt,
        persistent_connect(V5, "boiler", BOILER_TOKEN, "", true),
    )
    .await;
    assert_eq!(
        ack.reason_code,
        ReasonCode::SUCCESS,
        "{}: {ack:?}",
        v("boiler")
    );
}

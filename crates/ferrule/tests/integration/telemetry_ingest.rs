//! Telemetry and events in (SPEC "Topics with meaning", HTTP ingest): every
//! payload shape, sent by real clients over MQTT and by HTTP, is stored
//! exactly — keys, timestamps, values and their types — and readable the
//! moment it is acknowledged.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrule_mqtt::codec::{QoS, ReasonCode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_persistence::mosquitto;
use crate::mqtt_util::{Raw, V3, V5, World, create_api_key, create_device};
use crate::telemetry_util::{
    all_points, history, ingest, ingest_event, ingest_ok, now_ms, points, publish1_ack,
};
use crate::util::Api;

/// When a reading is taken: a `ts` the payload gave, or the receive time.
#[derive(Debug, Clone, Copy)]
enum When {
    At(i64),
    Received,
}

/// A payload and the readings it must give: `(key, when, value)`.
struct Shape {
    payload: String,
    readings: Vec<(&'static str, When, Value)>,
}

/// A reading expected, with the window its payload was sent in.
type Expected = (When, Value, (i64, i64));

/// Every payload shape the SPEC allows, with keys distinct across shapes so
/// each stored point says which payload it came from.
fn shapes(t0: i64) -> Vec<Shape> {
    use When::{At, Received};
    let shape = |payload: String, readings| Shape { payload, readings };
    vec![
        // A plain object: one reading per key, at the receive time.
        shape(
            r#"{"temp": 21.5, "on": true, "mode": "eco", "count": 3, "neg": -12.75, "zero": 0, "sci": 1.5e3}"#.into(),
            vec![
                ("temp", Received, json!(21.5)),
                ("on", Received, json!(true)),
                ("mode", Received, json!("eco")),
                ("count", Received, json!(3)),
                ("neg", Received, json!(-12.75)),
                ("zero", Received, json!(0)),
                // A whole number comes back as an integer however it was written.
                ("sci", Received, json!(1500)),
            ],
        ),
        // A timestamped object.
        shape(
            format!(r#"{{"ts": {t0}, "values": {{"hum": 40.25, "door": false, "label": "north"}}}}"#),
            vec![
                ("hum", At(t0), json!(40.25)),
                ("door", At(t0), json!(false)),
                ("label", At(t0), json!("north")),
            ],
        ),
        // `ts` after `values` is the same thing.
        shape(
            format!(r#"{{"values": {{"lux": 300}}, "ts": {}}}"#, t0 + 1),
            vec![("lux", At(t0 + 1), json!(300))],
        ),
        // An array mixing both kinds.
        shape(
            format!(
                r#"[{{"ts": {}, "values": {{"pres": 1013}}}}, {{"ts": {}, "values": {{"pres": 1014.5}}}}, {{"volt": 3.3}}]"#,
                t0 + 2,
                t0 + 3
            ),
            vec![
                ("pres", At(t0 + 2), json!(1013)),
                ("pres", At(t0 + 3), json!(1014.5)),
                ("volt", Received, json!(3.3)),
            ],
        ),
        // Nested objects are flattened with dots.
        shape(
            r#"{"engine": {"rpm": 900, "oil": {"temp": 88.5}}, "gps": {"fix": true}}"#.into(),
            vec![
                ("engine.rpm", Received, json!(900)),
                ("engine.oil.temp", Received, json!(88.5)),
                ("gps.fix", Received, json!(true)),
            ],
        ),
        // …inside a timestamped object too.
        shape(
            format!(
                r#"{{"ts": {}, "values": {{"batt": {{"level": 77, "state": "ok"}}}}}}"#,
                t0 + 4
            ),
            vec![
                ("batt.level", At(t0 + 4), json!(77)),
                ("batt.state", At(t0 + 4), json!("ok")),
            ],
        ),
        // `values` without `ts`: the receive time.
        shape(
            r#"{"values": {"rssi": -70}}"#.into(),
            vec![("rssi", Received, json!(-70))],
        ),
        // With a key besides `ts` and `values` an object is plain, and `ts`
        // is an ordinary reading (the SPEC's contract, written out).
        shape(
            r#"{"ts": 5, "flow": 2}"#.into(),
            vec![("ts", Received, json!(5)), ("flow", Received, json!(2))],
        ),
        // A whole `ts` in exponent notation is a timestamp.
        shape(
            r#"{"ts": 1.7e12, "values": {"old": 1}}"#.into(),
            vec![("old", At(1_700_000_000_000), json!(1))],
        ),
        // Unicode keys and strings.
        shape(
            r#"{"température": "20 °C", "名前": "ポンプ"}"#.into(),
            vec![
                ("température", Received, json!("20 °C")),
                ("名前", Received, json!("ポンプ")),
            ],
        ),
        // Empty payloads are valid and store nothing.
        shape("{}".into(), vec![]),
        shape("[]".into(), vec![]),
        shape(
            format!(r#"{{"ts": {t0}, "values": {{}}}}"#),
            vec![],
        ),
    ]
}

/// Checks a device's whole stored history against the shapes it was sent;
/// `windows[i]` is when shape `i` was sent (before, after its ack).
async fn assert_stored(api: &Api, device: &str, shapes: &[Shape], windows: &[(i64, i64)]) {
    let answer = history(api, device, "").await;
    let stored = answer.as_object().expect("an object of keys");
    let mut want: BTreeMap<&str, Vec<Expected>> = BTreeMap::new();
    for (shape, window) in shapes.iter().zip(windows) {
        for (key, when, value) in &shape.readings {
            want.entry(key)
                .or_default()
                .push((*when, value.clone(), *window));
        }
    }
    let got_keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    let want_keys: Vec<&str> = want.keys().copied().collect();
    assert_eq!(got_keys, want_keys, "{device}: keys");
    let keys = api
        .get(&format!("/api/v1/devices/{device}/telemetry/keys"))
        .await;
    assert_eq!(keys.json, json!(want_keys), "{device}: keys route");
    for (key, expected) in want {
        let got = points(&answer, key);
        assert_eq!(got.len(), expected.len(), "{device} {key}: {got:?}");
        for ((ts, value), (when, want_value, (before, after))) in got.iter().zip(&expected) {
            assert_eq!(value, want_value, "{device} {key}");
            match when {
                When::At(t) => assert_eq!(ts, t, "{device} {key}: ts"),
                When::Received => assert!(
                    (*before..=*after).contains(ts),
                    "{device} {key}: ts {ts} not within the request {before}..={after}"
                ),
            }
        }
    }
}

#[tokio::test]
async fn every_payload_shape_is_stored_exactly_over_every_transport() {
    let w = World::start().await;
    let t0 = now_ms() - 3_600_000;
    let shapes = shapes(t0);
    let topic = |d: &str| format!("devices/{d}/telemetry");

    // MQTT 5, QoS 1, on our own raw client: PUBACK success, and the points
    // are readable the moment it arrives (acknowledged = stored).
    let token = create_device(&w.admin, "raw5").await;
    let mut raw = Raw::login(&w.s.mqtt, V5, "raw5", &token, None).await;
    let mut windows = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let before = now_ms();
        let ack = publish1_ack(
            &mut raw,
            i as u16 + 1,
            &topic("raw5"),
            shape.payload.as_bytes(),
        )
        .await;
        assert_eq!(
            ack.reason_code,
            ReasonCode::SUCCESS,
            "{}: {ack:?}",
            shape.payload
        );
        windows.push((before, now_ms()));
    }
    assert_stored(&w.admin, "raw5", &shapes, &windows).await;

    // mosquitto_pub: MQTT 3.1.1 at QoS 1, MQTT 5 at QoS 2 (it exits once
    // the exchange is complete).
    for (device, args) in [
        ("cli311", ["-V", "mqttv311", "-q", "1"]),
        ("cli5q2", ["-V", "mqttv5", "-q", "2"]),
    ] {
        let token = create_device(&w.admin, device).await;
        let mut windows = Vec::new();
        for shape in &shapes {
            let before = now_ms();
            let t = topic(device);
            let login = ["-i", device, "-u", &token, "-t", &t, "-m", &shape.payload];
            mosquitto(
                "mosquitto_pub",
                &w.s.mqtt,
                &[&args[..], &login[..]].concat(),
            )
            .await;
            windows.push((before, now_ms()));
        }
        assert_stored(&w.admin, device, &shapes, &windows).await;
    }

    // HTTP ingest: 204 once stored.
    let token = create_device(&w.admin, "http").await;
    let mut windows = Vec::new();
    for shape in &shapes {
        let before = now_ms();
        ingest_ok(&w.s, &token, &shape.payload).await;
        windows.push((before, now_ms()));
    }
    assert_stored(&w.admin, "http", &shapes, &windows).await;

    // One device's data is not another's.
    assert_eq!(
        history(&w.admin, "pump", "").await,
        json!({}),
        "pump sent nothing"
    );
    w.s.stop().await;
}

#[tokio::test]
async fn qos0_telemetry_is_stored_too() {
    let w = World::start().await;
    let before = now_ms();
    mosquitto(
        "mosquitto_pub",
        &w.s.mqtt,
        &[
            "-q",
            "0",
            "-u",
            &w.pump,
            "-t",
            "devices/pump/telemetry",
            "-m",
            r#"{"q0": 7}"#,
        ],
    )
    .await;
    // Nothing acknowledges QoS 0: wait for the writer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let stored = loop {
        let answer = history(&w.admin, "pump", "keys=q0").await;
        let got = points(&answer, "q0");
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].1, json!(7));
    assert!((before..=now_ms()).contains(&stored[0].0));
    w.s.stop().await;
}

#[tokio::test]
async fn events_are_stored_as_sent_with_the_server_time() {
    let w = World::start().await;
    let mut dev = Raw::login(&w.s.mqtt, V5, "ev", &w.pump, None).await;
    // (type, payload, how the API shows it, transport)
    let sent: Vec<(&str, Vec<u8>, Value, &str)> = vec![
        (
            "boot",
            br#"{"reason": "power", "n": 2}"#.to_vec(),
            json!({"payload": {"reason": "power", "n": 2}}),
            "mqtt",
        ),
        (
            "log",
            b"disk almost full".to_vec(),
            json!({"payload": "disk almost full"}),
            "mqtt",
        ),
        (
            "blob",
            vec![0xff, 0x00, 0x80, 0x7f],
            json!({"payload_base64": "/wCAfw=="}),
            "mqtt",
        ),
        ("empty", Vec::new(), json!({"payload": ""}), "mqtt"),
        (
            "alarm",
            br#"{"level": 3}"#.to_vec(),
            json!({"payload": {"level": 3}}),
            "http",
        ),
        (
            "boot",
            b"[1, 2, 3]".to_vec(),
            json!({"payload": [1, 2, 3]}),
            "http",
        ),
        (
            "blob",
            vec![0xc3, 0x28],
            json!({"payload_base64": "wyg="}),
            "http",
        ),
    ];
    let mut windows = Vec::new();
    for (i, (event_type, payload, _, transport)) in sent.iter().enumerate() {
        let before = now_ms();
        if *transport == "mqtt" {
            let ack = publish1_ack(
                &mut dev,
                i as u16 + 1,
                &format!("devices/pump/events/{event_type}"),
                payload,
            )
            .await;
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{event_type}");
        } else {
            let r = ingest_event(&w.s, &w.pump, event_type, payload).await;
            assert_eq!(r.status, 204, "{event_type}: {}", r.text);
        }
        windows.push((before, now_ms()));
    }
    let r = w.admin.get("/api/v1/devices/pump/events").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["next_cursor"], Value::Null);
    // The device's MQTT connection logs its own `connectivity` event.
    let items: Vec<&Value> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] != "connectivity")
        .collect();
    assert_eq!(items.len(), sent.len(), "{}", r.text);
    let mut last_id = 0;
    for (item, ((event_type, _, shown, _), (before, after))) in
        items.iter().zip(sent.iter().zip(&windows))
    {
        assert_eq!(item["type"], *event_type, "{item}");
        assert_eq!(item["device"], "pump");
        let ts = item["ts"].as_i64().unwrap();
        assert!((*before..=*after).contains(&ts), "{item}: server time");
        let id = item["id"].as_i64().unwrap();
        assert!(id > last_id, "ids increase: {item}");
        last_id = id;
        for (k, v) in shown.as_object().unwrap() {
            assert_eq!(&item[k], v, "{item}");
        }
        let other = if shown.get("payload").is_some() {
            "payload_base64"
        } else {
            "payload"
        };
        assert!(
            item.get(other).is_none(),
            "only one form of payload: {item}"
        );
    }
    // Events are not telemetry.
    assert_eq!(history(&w.admin, "pump", "").await, json!({}));
    // A type filter.
    let r = w.admin.get("/api/v1/devices/pump/events?type=boot").await;
    let boots: Vec<&Value> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["payload"])
        .collect();
    assert_eq!(
        boots,
        [&json!({"reason": "power", "n": 2}), &json!([1, 2, 3])]
    );
    // A type must be one topic level.
    for bad in ["a%23b", "a%2Bb", &"t".repeat(129)] {
        let r = ingest_event(&w.s, &w.pump, bad, b"x").await;
        r.assert_problem(400);
        assert_eq!(r.json["field"], "type", "{bad}: {}", r.text);
    }
    let r = w.admin.get("/api/v1/devices/pump/events").await;
    let stored = r.json["items"].as_array().unwrap().iter();
    assert_eq!(
        stored.filter(|e| e["type"] != "connectivity").count(),
        sent.len()
    );
    w.s.stop().await;
}

#[tokio::test]
async fn http_ingest_goes_through_the_router_like_mqtt() {
    let w = World::start().await;
    let mut obs = w.observer().await;
    obs.subscribe(1, &[("devices/pump/#", QoS::AtMostOnce)])
        .await;
    let body = br#"{"temp": 20}"#;
    ingest_ok(&w.s, &w.pump, body).await;
    let m = obs.recv_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("devices/pump/telemetry", &body[..])
    );

    let r = ingest_event(&w.s, &w.pump, "boot", b"up").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let m = obs.recv_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("devices/pump/events/boot", &b"up"[..])
    );

    // Reported state: 202, published on the device's topic.
    let state = br#"{"fw": "1.2.3", "uptime": 42}"#;
    let r =
        w.s.api(&w.pump)
            .raw(
                Method::POST,
                "/api/v1/ingest/state/reported",
                Some((state, "application/json")),
            )
            .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let m = obs.recv_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("devices/pump/state/reported", &state[..])
    );
    for bad in [&b"[1]"[..], b"nope", b"42", b""] {
        let r =
            w.s.api(&w.pump)
                .raw(
                    Method::POST,
                    "/api/v1/ingest/state/reported",
                    Some((bad, "application/json")),
                )
                .await;
        r.assert_problem(400);
    }
    // A refused telemetry payload reaches nobody.
    ingest(&w.s, &w.pump, "not json").await.assert_problem(400);
    obs.expect_silence(Duration::from_millis(300)).await;
    w.s.stop().await;
}

#[tokio::test]
async fn ingest_takes_only_a_valid_device_token() {
    let w = World::start().await;
    let valve = create_device(&w.admin, "valve").await;
    let (_, key_secret) = create_api_key(&w.admin, "owner").await;
    let admin_session = w.admin.token.clone().unwrap();
    let body = r#"{"intruder": 1}"#;
    for (who, token) in [
        ("no token", None),
        ("a user session", Some(admin_session.as_str())),
        ("an API key", Some(key_secret.as_str())),
        (
            "a made-up device token",
            Some("fd_0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        ("garbage", Some("not-a-token")),
    ] {
        let api = match token {
            Some(t) => w.s.api(t),
            None => w.s.anon(),
        };
        for path in [
            "/api/v1/ingest/telemetry",
            "/api/v1/ingest/events/boot",
            "/api/v1/ingest/state/reported",
        ] {
            let r = api
                .raw(
                    Method::POST,
                    path,
                    Some((body.as_bytes(), "application/json")),
                )
                .await;
            assert_eq!(r.status, 401, "{who} {path}: {}", r.text);
            r.assert_problem(401);
        }
    }
    // A disabled device is refused until enabled again.
    ingest_ok(&w.s, &w.pump, r#"{"a": 1}"#).await;
    let r = w
        .admin
        .patch("/api/v1/devices/pump", json!({"enabled": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ingest(&w.s, &w.pump, r#"{"a": 2}"#)
        .await
        .assert_problem(401);
    let r = w
        .admin
        .patch("/api/v1/devices/pump", json!({"enabled": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    ingest_ok(&w.s, &w.pump, r#"{"a": 3}"#).await;
    // A deleted device is refused.
    ingest_ok(&w.s, &valve, r#"{"v": 1}"#).await;
    let r = w.admin.delete("/api/v1/devices/valve").await;
    assert!(r.status == 204 || r.status == 200, "{}", r.text);
    ingest(&w.s, &valve, r#"{"v": 2}"#)
        .await
        .assert_problem(401);

    // Only what was accepted is stored.
    let values: Vec<Value> = all_points(&w.admin, "pump", "a")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, [json!(1), json!(3)]);
    assert_eq!(
        w.admin
            .get("/api/v1/devices/pump/telemetry/keys")
            .await
            .json,
        json!(["a"])
    );
    w.s.stop().await;
}

#[tokio::test]
async fn a_device_publishes_telemetry_only_as_itself() {
    // The ACL still applies: pump cannot write valve's telemetry over MQTT.
    let w = World::start().await;
    create_device(&w.admin, "valve").await;
    for v in [V3, V5] {
        let mut dev = Raw::login(&w.s.mqtt, v, "pump", &w.pump, None).await;
        let rc = dev
            .publish1(1, "devices/valve/telemetry", br#"{"forged": 1}"#)
            .await;
        if v == V5 {
            assert_eq!(rc, ReasonCode::NOT_AUTHORIZED);
        }
    }
    assert_eq!(history(&w.admin, "valve", "").await, json!({}));
    w.s.stop().await;
}

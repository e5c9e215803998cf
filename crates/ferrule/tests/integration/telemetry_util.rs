//! Helpers for the telemetry tests: ingest as a device (HTTP or MQTT),
//! read history back as a user, and read counters from `/metrics`.

use ferrule_mqtt::codec::{Ack, Packet, QoS};
use reqwest::Method;
use serde_json::{Value, json};

use crate::mqtt_util::{Raw, publish_packet};
use crate::util::{Api, Resp, Server};

pub const DAY_MS: i64 = 86_400_000;

/// The wall clock in ms since the Unix epoch, as the server reads it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// `POST /api/v1/ingest/telemetry` with a device token and a raw body.
pub async fn ingest(s: &Server, token: &str, body: impl AsRef<[u8]>) -> Resp {
    s.api(token)
        .raw(
            Method::POST,
            "/api/v1/ingest/telemetry",
            Some((body.as_ref(), "application/json")),
        )
        .await
}

/// Ingests over HTTP and asserts 204 (stored durably).
pub async fn ingest_ok(s: &Server, token: &str, body: impl AsRef<[u8]>) {
    let body = body.as_ref();
    let r = ingest(s, token, body).await;
    assert_eq!(
        r.status,
        204,
        "ingest {}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)]),
        r.text
    );
}

/// `POST /api/v1/ingest/events/{type}` with a device token.
pub async fn ingest_event(s: &Server, token: &str, event_type: &str, body: &[u8]) -> Resp {
    s.api(token)
        .raw(
            Method::POST,
            &format!("/api/v1/ingest/events/{event_type}"),
            Some((body, "application/octet-stream")),
        )
        .await
}

/// Creates a device with a profile (creating the profile when the tenant
/// has none of the name); returns its access token.
pub async fn create_device_in_profile(api: &Api, id: &str, profile: &str) -> String {
    let r = api
        .post("/api/v1/device-profiles", json!({"name": profile}))
        .await;
    assert!(
        matches!(r.status, 201 | 409),
        "create profile {profile}: {}",
        r.text
    );
    let r = api
        .post("/api/v1/devices", json!({"id": id, "profile": profile}))
        .await;
    assert_eq!(r.status, 201, "create device {id}: {}", r.text);
    assert_eq!(r.json["profile"], profile, "{}", r.text);
    r.json["token"].as_str().expect("token").to_owned()
}

/// `GET /api/v1/devices/{device}/telemetry?{query}`, which must answer 200.
pub async fn history(api: &Api, device: &str, query: &str) -> Value {
    let r = api
        .get(&format!("/api/v1/devices/{device}/telemetry?{query}"))
        .await;
    assert_eq!(r.status, 200, "history {device}?{query}: {}", r.text);
    r.json
}

/// The points of one key in a history answer, as `(ts, value)`.
pub fn points(answer: &Value, key: &str) -> Vec<(i64, Value)> {
    answer[key]
        .as_array()
        .unwrap_or_else(|| panic!("no key {key} in {answer}"))
        .iter()
        .map(|p| {
            let ts = p["ts"].as_i64().unwrap_or_else(|| panic!("ts in {p}"));
            (ts, p["value"].clone())
        })
        .collect()
}

/// Every raw point of one key of a device (up to 100 000).
pub async fn all_points(api: &Api, device: &str, key: &str) -> Vec<(i64, Value)> {
    let answer = history(api, device, &format!("keys={key}&limit=100000")).await;
    points(&answer, key)
}

/// The value of one Prometheus series, written exactly as `/metrics`
/// writes it (`name{label="v"}`); 0 when absent.
pub async fn metric(s: &Server, series: &str) -> f64 {
    let text = s.anon().get("/metrics").await.text;
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("a number"))
        })
        .unwrap_or(0.0)
}

/// `ferrule_telemetry_refused_total{reason="…"}`.
pub async fn refused_total(s: &Server, reason: &str) -> f64 {
    metric(
        s,
        &format!("ferrule_telemetry_refused_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// Publishes at QoS 1 on a raw connection and returns the whole PUBACK
/// (reason code and, in MQTT 5, the reason string).
pub async fn publish1_ack(raw: &mut Raw, packet_id: u16, topic: &str, payload: &[u8]) -> Ack {
    raw.send(Packet::Publish(publish_packet(
        topic,
        payload,
        QoS::AtLeastOnce,
        Some(packet_id),
    )))
    .await;
    match raw.recv().await {
        Packet::PubAck(a) => {
            assert_eq!(a.packet_id.get(), packet_id);
            a
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// The reason string of an acknowledgement, or "".
pub fn reason_string(ack: &Ack) -> String {
    ack.properties
        .reason_string
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

/// A JSON object `{"k0": 1, "k1": 1, …}` with `n` keys.
pub fn object_with_keys(n: usize) -> String {
    let body: Vec<String> = (0..n).map(|i| format!("\"k{i}\":1")).collect();
    format!("{{{}}}", body.join(","))
}

/// `ferrule_telemetry_chunks_sealed_total`.
pub async fn chunks_sealed(s: &Server) -> f64 {
    metric(s, "ferrule_telemetry_chunks_sealed_total").await
}

/// Waits until at least `n` chunks have been sealed in all (the server
/// runs with a short `telemetry.seal_age`), so that what was sent sits in
/// compressed chunks rather than in memory. A series under 8192 points
/// seals into one chunk.
pub async fn wait_sealed(s: &Server, n: f64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while chunks_sealed(s).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} chunks were not sealed within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A server that seals telemetry into chunks one second after it arrives.
pub fn sealing_quickly() -> crate::util::ServerBuilder {
    crate::util::ServerBuilder::new().env("FERRULE_TELEMETRY_SEAL_AGE", "1s")
}

/// Stops a server with `signal` (SIGTERM must exit cleanly) and starts
/// `next` on its data directory. Returns the new server and the old one's
/// temp dir, which holds the data and must outlive the new server.
pub async fn restart(
    mut s: Server,
    signal: nix::sys::signal::Signal,
    next: crate::util::ServerBuilder,
) -> (Server, tempfile::TempDir) {
    s.signal(signal);
    let status = s.wait_exit().await;
    if signal == nix::sys::signal::Signal::SIGTERM {
        assert!(status.success(), "exit status {status}");
    }
    let (dir, data) = (s.dir, s.data_dir);
    (next.data_dir(data).start().await, dir)
}

/// Creates a user of this role in the admin's tenant and logs in.
pub async fn user_api(s: &Server, admin: &Api, email: &str, role: &str) -> Api {
    let (_, password) = crate::mqtt_util::create_user(admin, email, role).await;
    let token = s.login(email, &password).await;
    s.api(&token)
}

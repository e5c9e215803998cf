//! The live stream `GET /api/v1/stream`: a WebSocket client (tungstenite,
//! the library axum serves with) subscribes to topic filters and receives
//! what real MQTT clients (mosquitto_pub, raw sockets) publish, under the
//! tenant's ACL, and nothing of another tenant's.

use std::process::Stdio;
use std::time::Duration;

use ferrule_mqtt::codec::{self, Packet, QoS};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::bytes::BytesMut;

use crate::mqtt_util::{Raw, V5, World, create_api_key, publish_packet};
use crate::util::{ADMIN_EMAIL, ADMIN_PASSWORD, Server, ServerBuilder};

const WAIT: Duration = Duration::from_secs(5);

/// An open stream, as a test client.
struct Live(WebSocketStream<MaybeTlsStream<TcpStream>>);

fn url(s: &Server, query: &str) -> String {
    format!("{}/api/v1/stream{query}", s.http.replacen("http", "ws", 1))
}

/// Opens a stream with `Authorization: Bearer TOKEN` and `query`, or says
/// with which HTTP status it was refused.
async fn try_open(s: &Server, token: Option<&str>, query: &str) -> Result<Live, u16> {
    try_open_with(s, token, query, &[]).await
}

async fn try_open_with(
    s: &Server,
    token: Option<&str>,
    query: &str,
    headers: &[(&'static str, &str)],
) -> Result<Live, u16> {
    let mut request = url(s, query).into_client_request().expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Live(ws)),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("stream did not open: {e}"),
    }
}

async fn open(s: &Server, token: &str, query: &str) -> Live {
    try_open(s, Some(token), query).await.expect("stream opens")
}

impl Live {
    /// The next JSON frame from the server.
    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("a frame within 5 s")
                .expect("the stream is open")
                .expect("a frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    async fn send(&mut self, v: Value) {
        self.0
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Subscribes; returns the `subscribed` answer's outcomes.
    async fn subscribe(&mut self, filters: &[&str]) -> Vec<Value> {
        self.send(json!({"op": "subscribe", "filters": filters}))
            .await;
        let answer = self.next().await;
        assert_eq!(answer["type"], "subscribed", "{answer}");
        answer["filters"].as_array().unwrap().clone()
    }

    /// The next `message` frame.
    async fn message(&mut self) -> Value {
        let m = self.next().await;
        assert_eq!(m["type"], "message", "{m}");
        m
    }

    async fn expect_silence(&mut self, d: Duration) {
        if let Ok(frame) = tokio::time::timeout(d, self.0.next()).await {
            panic!("expected nothing, got {frame:?}");
        }
    }

    /// Reads until the server closes; returns its close code and reason.
    async fn closed(&mut self, within: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .expect("the server closes the stream in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    // Reading on sends our half of the closing handshake.
                    let _ = tokio::time::timeout(WAIT, self.0.next()).await;
                    return (close.code.into(), close.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("stream broke instead of closing: {e}"),
            }
        }
    }
}

/// Publishes with `mosquitto_pub` (MQTT 5) as `login`.
async fn mosquitto_pub(s: &Server, login: &[&str], topic: &str, payload: &str, retain: bool) {
    let (host, port) = s.mqtt.rsplit_once(':').unwrap();
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.args(["-h", host, "-p", port, "-V", "mqttv5", "-q", "1"])
        .args(login)
        .args(["-t", topic, "-m", payload])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if retain {
        cmd.arg("-r");
    }
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output())
        .await
        .expect("mosquitto_pub hung")
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn admin_login() -> [&'static str; 4] {
    ["-u", "user:admin@localhost", "-P", ADMIN_PASSWORD]
}

/// The sum of a metric's samples whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_stream_shows_the_tenant_live_under_its_rules() {
    let w = World::start().await;
    let s = &w.s;
    let admin_token = w.admin.token.clone().unwrap();
    let pump = ["-u", w.pump.as_str()];

    // Retained first, flagged, then live telemetry from a real client.
    mosquitto_pub(s, &pump, "devices/pump/status", "online", true).await;
    let mut live = open(s, &admin_token, "?filter=devices/pump/%23").await;
    let answer = live.next().await;
    assert_eq!(
        answer,
        json!({"type": "subscribed", "filters": [{"filter": "devices/pump/#", "granted": true}]})
    );
    let retained = live.message().await;
    assert_eq!(retained["topic"], "devices/pump/status");
    assert_eq!(retained["payload"], "online");
    assert_eq!(retained["retain"], true);
    mosquitto_pub(
        s,
        &pump,
        "devices/pump/telemetry",
        r#"{"temp": 21.5}"#,
        false,
    )
    .await;
    let m = live.message().await;
    assert_eq!(m["topic"], "devices/pump/telemetry");
    assert_eq!(m["kind"], "telemetry");
    assert_eq!(m["device"], "pump");
    assert_eq!(m["payload"], json!({"temp": 21.5}));
    assert_eq!(m["qos"], 1);
    assert_eq!(m["retain"], false);
    assert!(m["ts"].as_i64().unwrap() > 1_700_000_000_000);

    // Twin changes arrive on the internal topic, asked for by name.
    let twin = live.subscribe(&["$ferrule/devices/+/twin"]).await;
    assert_eq!(twin[0]["granted"], true);
    let r = w
        .admin
        .patch(
            "/api/v1/devices/pump/state",
            json!({"desired": {"fan": "on"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let change = loop {
        // The retained desired state and delta (devices/pump/state/…) may
        // come first, through devices/pump/#.
        let m = live.message().await;
        if m["kind"] == "twin" {
            break m;
        }
        assert_eq!(m["kind"], "state", "{m}");
    };
    assert_eq!(change["topic"], "$ferrule/devices/pump/twin");
    assert_eq!(change["device"], "pump");
    assert_eq!(change["payload"]["device"], "pump", "{change}");
    live.send(json!({"op": "unsubscribe", "filters": ["$ferrule/devices/+/twin"]}))
        .await;
    assert_eq!(live.next().await["type"], "unsubscribed");
    // What the twin published on devices/pump/state/… after its change.
    while let Ok(Some(Ok(_))) =
        tokio::time::timeout(Duration::from_millis(300), live.0.next()).await
    {}

    // Bad input gets an error and the stream lives on.
    live.0
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let e = live.next().await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["detail"].as_str().unwrap().contains("op"), "{e}");
    live.send(json!({"op": "publish", "filters": []})).await;
    assert_eq!(live.next().await["type"], "error");
    let refused = live
        .subscribe(&["a/#/b", "$share/g/devices/#", "devices/+/telemetry"])
        .await;
    assert_eq!(refused[0]["granted"], false);
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid topic filter")
    );
    assert_eq!(refused[1]["granted"], false);
    assert_eq!(refused[2]["granted"], true);
    // Overlapping subscriptions deliver once.
    mosquitto_pub(s, &pump, "devices/pump/telemetry", r#"{"temp": 22}"#, false).await;
    assert_eq!(live.message().await["payload"], json!({"temp": 22}));

    // Unsubscribing stops delivery.
    live.send(json!({"op": "unsubscribe", "filters": ["devices/pump/#", "devices/+/telemetry"]}))
        .await;
    assert_eq!(live.next().await["type"], "unsubscribed");
    mosquitto_pub(s, &pump, "devices/pump/telemetry", r#"{"temp": 23}"#, false).await;
    live.expect_silence(Duration::from_millis(300)).await;

    // Another tenant's messages never arrive, even on `#`.
    let (beta_pump, _) = w.beta().await;
    assert_eq!(live.subscribe(&["#"]).await[0]["granted"], true);
    // The tenant's retained messages (status, desired state, delta) come
    // first; the first live message after them must be tenant default's.
    mosquitto_pub(
        s,
        &["-u", &beta_pump],
        "devices/pump/telemetry",
        r#"{"beta": 1}"#,
        false,
    )
    .await;
    mosquitto_pub(s, &pump, "devices/pump/telemetry", r#"{"alpha": 1}"#, false).await;
    let m = loop {
        let m = live.message().await;
        if m["retain"] == false {
            break m;
        }
    };
    assert_eq!(
        m["payload"],
        json!({"alpha": 1}),
        "beta's message leaked: {m}"
    );

    // An ACL deny rule refuses the filter, and hides its topics from `#`.
    let r = w
        .admin
        .post(
            "/api/v1/acl-rules",
            json!({"effect": "deny", "action": "subscribe", "topic": "devices/secret/#",
                   "subject": "users", "priority": 10}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        live.subscribe(&["devices/secret/#"]).await[0]["granted"],
        false
    );
    mosquitto_pub(s, &admin_login(), "devices/secret/x", "hidden", false).await;
    mosquitto_pub(s, &admin_login(), "devices/open/x", "shown", false).await;
    assert_eq!(live.message().await["payload"], "shown");
    let rule = r.json["id"].as_str().unwrap();
    assert_eq!(
        w.admin
            .delete(&format!("/api/v1/acl-rules/{rule}"))
            .await
            .status,
        204
    );
    live.0.close(None).await.unwrap();

    // A viewer streams, with the token in the URL as a browser would.
    let r = w
        .admin
        .post(
            "/api/v1/users",
            json!({"email": "v@x.io", "password": "password-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let viewer = s.login("v@x.io", "password-1").await;
    let mut browser = try_open(
        s,
        None,
        &format!("?access_token={viewer}&filter=devices/%2B/telemetry"),
    )
    .await
    .expect("a viewer streams with ?access_token=");
    assert_eq!(browser.next().await["filters"][0]["granted"], true);
    mosquitto_pub(s, &pump, "devices/pump/telemetry", r#"{"v": 1}"#, false).await;
    assert_eq!(browser.message().await["payload"], json!({"v": 1}));
    browser.0.close(None).await.unwrap();

    // Refused before the upgrade: no credentials, a device, a plain GET.
    assert_eq!(try_open(s, None, "").await.err(), Some(401));
    assert_eq!(try_open(s, Some("fs_nonsense"), "").await.err(), Some(401));
    assert_eq!(try_open(s, Some(&w.pump), "").await.err(), Some(403));
    w.admin.get("/api/v1/stream").await.assert_problem(426);
    w.anon_get_is_401().await;

    // An admin streams another tenant with X-Tenant, and only that tenant.
    let mut in_beta = try_open_with(
        s,
        Some(&admin_token),
        "?filter=%23",
        &[("x-tenant", "beta")],
    )
    .await
    .expect("an admin streams tenant beta");
    assert_eq!(in_beta.next().await["type"], "subscribed");
    mosquitto_pub(s, &pump, "devices/pump/telemetry", r#"{"alpha": 2}"#, false).await;
    mosquitto_pub(
        s,
        &["-u", &beta_pump],
        "devices/pump/telemetry",
        r#"{"beta": 2}"#,
        false,
    )
    .await;
    assert_eq!(in_beta.message().await["payload"], json!({"beta": 2}));
    in_beta.0.close(None).await.unwrap();
    let mut beta_in_url = open(s, &admin_token, "?tenant=beta&filter=%23").await;
    assert_eq!(beta_in_url.next().await["type"], "subscribed");
    mosquitto_pub(
        s,
        &["-u", &beta_pump],
        "devices/pump/telemetry",
        r#"{"beta": 3}"#,
        false,
    )
    .await;
    assert_eq!(beta_in_url.message().await["payload"], json!({"beta": 3}));
    drop(beta_in_url);
    // Anyone but an admin stays in their own tenant.
    assert_eq!(
        try_open(s, Some(&viewer), "?tenant=beta").await.err(),
        Some(403)
    );

    // One identity holds at most 32 streams; others are not held back.
    let (_, busy_key) = create_api_key(&w.admin, "viewer").await;
    let mut many = Vec::new();
    for _ in 0..32 {
        many.push(open(s, &busy_key, "").await);
    }
    assert_eq!(try_open(s, Some(&busy_key), "").await.err(), Some(429));
    let other = open(s, &admin_token, "").await;
    drop((many, other));

    // A revoked API key's stream closes at once, saying why.
    let (key, secret) = create_api_key(&w.admin, "viewer").await;
    let mut keyed = open(s, &secret, "?filter=%23").await;
    assert_eq!(keyed.next().await["type"], "subscribed");
    let key_id = key.strip_prefix("key:").unwrap();
    assert_eq!(
        w.admin
            .delete(&format!("/api/v1/api-keys/{key_id}"))
            .await
            .status,
        204
    );
    let (code, reason) = keyed.closed(WAIT).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("revoked"), "{reason}");

    // Every stream has let go of the router: none is left open.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = s.anon().get("/metrics").await.text;
        let open = metric(&text, "ferrule_stream_connections", &[]);
        if open == 0.0 {
            assert!(
                metric(&text, "ferrule_stream_opened_total", &[]) >= 3.0,
                "{text}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} streams still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl World {
    async fn anon_get_is_401(&self) {
        self.s
            .anon()
            .get("/api/v1/stream")
            .await
            .assert_problem(401);
    }
}

#[tokio::test]
async fn a_stream_ends_with_its_reason_when_its_reader_falls_behind_sends_too_much_or_the_server_stops()
 {
    // The flood is one client's: lift its rate limits, which would
    // otherwise pace it at 2 MiB/s.
    let w = World::with(
        ServerBuilder::new()
            .config_file("[limits]\nclient_bytes_per_sec = 0\nclient_messages_per_sec = 0\n"),
    )
    .await;
    let s = &w.s;
    let admin_token = w.admin.token.clone().unwrap();
    let mut slow = open(s, &admin_token, "?filter=flood/%23").await;
    assert_eq!(slow.next().await["type"], "subscribed");
    // From here the reader does not read while 64 MiB are published: far
    // beyond its 4 MiB inbox and what socket buffers hold.
    let mut publisher = Raw::login(
        &s.mqtt,
        V5,
        "flooder",
        &format!("user:{ADMIN_EMAIL}"),
        Some(ADMIN_PASSWORD),
    )
    .await;
    let payload = vec![b'x'; 64 * 1024];
    let mut chunk = BytesMut::new();
    for _ in 0..16 {
        codec::encode(
            &Packet::Publish(publish_packet("flood/a", &payload, QoS::AtMostOnce, None)),
            V5,
            &mut chunk,
        )
        .expect("encode");
    }
    let started = std::time::Instant::now();
    for _ in 0..64 {
        publisher.send_raw(&chunk).await;
    }
    publisher.send(Packet::PingReq).await;
    assert!(matches!(publisher.recv().await, Packet::PingResp));
    eprintln!("published 64 MiB in {:?}", started.elapsed());

    let (code, reason) = slow.closed(Duration::from_secs(20)).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.starts_with("too slow:"), "{reason}");
    let text = s.anon().get("/metrics").await.text;
    assert!(
        metric(
            &text,
            "ferrule_stream_dropped_total",
            &["reason=\"slow\"", "tenant=\"default\""]
        ) >= 1.0,
        "{text}"
    );

    // A client frame over 64 KiB ends its stream, saying why.
    let mut chatty = open(s, &admin_token, "").await;
    let huge = json!({"op": "subscribe", "filters": ["x".repeat(70 * 1024)]});
    chatty.send(huge).await;
    let (code, reason) = chatty.closed(WAIT).await;
    assert_eq!(code, 1009, "{reason}");

    // Shutting the server down says goodbye to its streams.
    let mut last = open(s, &admin_token, "").await;
    s.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, reason) = last.closed(WAIT).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("shutting down"), "{reason}");
}

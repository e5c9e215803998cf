//! Devices' connectivity as a user sees it: online state, last seen, the
//! current connection and why the last one ended, in the device view and
//! the `?online=` listing, in the device's event log, and on the internal
//! topic `$ferrule/devices/{id}/connectivity`. The devices are real paho
//! clients (MQTT 3.1.1 and 5) driven by `tests/peers/device_link.py`.

use std::process::Stdio;
use std::time::Duration;

use ferrule_mqtt::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::mqtt_util::{Event, Raw, V3, V5, World, create_device, create_device_with_credential};
use crate::telemetry_util::restart;
use crate::util::{Api, Server, ServerBuilder};

/// How long a state the test waits for may take to show.
const DEADLINE: Duration = Duration::from_secs(10);

/// The device connections of one Python process, one command at a time.
struct Link {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Link {
    fn start(server: &Server, version: ProtocolVersion) -> Link {
        let (host, port) = server.mqtt.rsplit_once(':').expect("host:port");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/device_link.py");
        let mut child = Command::new("python3")
            .arg(script)
            .env("MQTT_HOST", host)
            .env("MQTT_PORT", port)
            .env("PROTO", if version == V5 { "5" } else { "3" })
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with paho-mqtt");
        Link {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            _child: child,
        }
    }

    /// Sends one command; returns its answer.
    async fn cmd(&mut self, line: &str) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("peer reads");
        let answer = tokio::time::timeout(Duration::from_secs(15), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("peer: no answer to {line:?}"))
            .expect("peer output")
            .unwrap_or_else(|| panic!("peer exited on {line:?}"));
        assert!(!answer.starts_with("FAIL"), "{answer}");
        answer
    }

    /// `wait_gone`: the MQTT 5 reason code the broker closed with (0 in 3.1.1).
    async fn gone(&mut self, name: &str) -> u8 {
        let answer = self.cmd(&format!("wait_gone {name}")).await;
        answer
            .strip_prefix("gone ")
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{answer}"))
    }
}

/// Reads the device until `ok` holds (or fails after [`DEADLINE`]).
async fn device_when(api: &Api, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = api.get(&format!("/api/v1/devices/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if ok(&r.json) {
            return r.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "device {id}: {what} not seen within {DEADLINE:?}: {}",
            r.json
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the device to be offline with this last reason.
async fn offline_because(api: &Api, id: &str, reason: &str) -> Value {
    device_when(api, id, reason, |d| {
        d["online"] == false && d["last_disconnect_reason"] == reason
    })
    .await
}

/// The ids of the devices `?online=` lists, over every page of `limit`.
async fn listed(api: &Api, online: bool, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/devices?online={online}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for d in r.json["items"].as_array().unwrap() {
            assert_eq!(d["online"], online, "{d}");
            ids.push(d["id"].as_str().unwrap().to_owned());
        }
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// The device's connectivity events in its event log: (event, reason).
async fn logged(api: &Api, id: &str) -> Vec<(String, Option<String>)> {
    let r = api
        .get(&format!("/api/v1/devices/{id}/events?limit=1000"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "connectivity")
        .map(|e| {
            let p = &e["payload"];
            assert_eq!(p["device"], id, "{e}");
            (
                p["event"].as_str().unwrap().to_owned(),
                p["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The device's connectivity events once there are at least `n` (the log
/// is written behind the device view), or what there is after 10 s.
async fn logged_at_least(api: &Api, id: &str, n: usize) -> Vec<(String, Option<String>)> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = logged(api, id).await;
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What an MQTT subscriber to the connectivity topics receives, until
/// `n` events or silence.
async fn heard(obs: &mut Raw, n: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    while got.len() < n {
        match obs.next(Duration::from_secs(5)).await {
            Event::Packet(Packet::Publish(p), _) => {
                if let Some(id) = p.packet_id {
                    obs.send(Packet::PubAck(ferrule_mqtt::codec::Ack::new(id)))
                        .await;
                }
                let payload: Value = serde_json::from_slice(&p.payload).unwrap();
                got.push((p.topic.to_string(), payload));
            }
            Event::Packet(other, _) => panic!("expected PUBLISH, got {other:?}"),
            Event::Closed | Event::Silent => break,
        }
    }
    got
}

fn reasons(events: &[(String, Option<String>)]) -> Vec<&str> {
    events
        .iter()
        .map(|(e, r)| r.as_deref().unwrap_or(e.as_str()))
        .collect()
}

fn ms(v: &Value) -> i64 {
    let t: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
    t.as_millisecond()
}

#[tokio::test]
async fn each_way_a_connection_ends_shows_in_the_view_the_list_and_the_log() {
    let w = World::start().await;
    let api = &w.admin;
    // A user subscribed to the internal topic sees what the broker says.
    let mut obs = w.observer().await;
    let granted = obs
        .subscribe(1, &[("$ferrule/devices/+/connectivity", QoS::AtLeastOnce)])
        .await;
    assert_eq!(granted, [ReasonCode::GRANTED_QOS_1]);
    // Devices that never connect: the online listing pages past them.
    for i in 0..5 {
        create_device(api, &format!("idle-{i}")).await;
    }
    for (v, protocol) in [(V3, "3.1.1"), (V5, "5.0")] {
        let id = format!("link-{}", protocol.replace('.', ""));
        let token = create_device(api, &id).await;
        let mut link = Link::start(&w.s, v);

        // Online, with the connection's details.
        link.cmd(&format!("connect a {id}-a 30 {token}")).await;
        let d = device_when(api, &id, "online", |d| d["online"] == true).await;
        assert_eq!(d["protocol"], protocol);
        assert_eq!(d["client_id"], format!("{id}-a"));
        assert!(
            d["client_address"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{d}"
        );
        assert!(
            d["connected_at"].is_string() && d["last_seen"].is_string(),
            "{d}"
        );
        assert_eq!(d["last_disconnect_reason"], Value::Null);
        assert_eq!(listed(api, true, 2).await, [id.as_str()]);
        let offline = listed(api, false, 2).await;
        assert!(!offline.contains(&id), "{offline:?}");
        assert!(offline.contains(&"idle-4".to_owned()), "{offline:?}");

        // DISCONNECT from the client.
        link.cmd("disconnect a").await;
        let d = offline_because(api, &id, "client_disconnect").await;
        assert!(ms(&d["disconnected_at"]) >= ms(&d["connected_at"]), "{d}");

        // Silence past 1.5 × the keep alive of 1 s.
        link.cmd(&format!("connect b {id}-b 1 {token}")).await;
        device_when(api, &id, "online again", |d| d["online"] == true).await;
        link.cmd("silence b").await;
        let code = link.gone("b").await;
        if v == V5 {
            assert_eq!(code, ReasonCode::KEEP_ALIVE_TIMEOUT.0);
        }
        let d = offline_because(api, &id, "keepalive_timeout").await;
        let quiet = ms(&d["disconnected_at"]) - ms(&d["last_seen"]);
        assert!((1000..5000).contains(&quiet), "silent for {quiet} ms: {d}");

        // The same client id again takes over: still online.
        link.cmd(&format!("connect c {id}-c 30 {token}")).await;
        link.cmd(&format!("connect d {id}-c 30 {token}")).await;
        let code = link.gone("c").await;
        if v == V5 {
            assert_eq!(code, ReasonCode::SESSION_TAKEN_OVER.0);
        }
        device_when(api, &id, "takeover", |d| {
            d["online"] == true && d["last_disconnect_reason"] == "takeover"
        })
        .await;
        assert_eq!(listed(api, true, 100).await, [id.as_str()]);

        // The network connection breaks.
        link.cmd("kill d").await;
        offline_because(api, &id, "connection_lost").await;

        // Disabled while connected: revoked.
        link.cmd(&format!("connect e {id}-e 30 {token}")).await;
        device_when(api, &id, "online again", |d| d["online"] == true).await;
        let r = api
            .patch(&format!("/api/v1/devices/{id}"), json!({"enabled": false}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let code = link.gone("e").await;
        if v == V5 {
            assert_eq!(code, ReasonCode::ADMINISTRATIVE_ACTION.0);
        }
        offline_because(api, &id, "revoked").await;
        assert!(listed(api, true, 100).await.is_empty());

        let expected = [
            "connected",
            "client_disconnect",
            "connected",
            "keepalive_timeout",
            "connected",
            "connected",
            "takeover",
            "connection_lost",
            "connected",
            "revoked",
        ];
        assert_eq!(
            takeover_in_order(reasons(&logged_at_least(api, &id, expected.len()).await)),
            expected
        );
        let got = heard(&mut obs, expected.len()).await;
        let topic = format!("$ferrule/devices/{id}/connectivity");
        assert!(got.iter().all(|(t, _)| *t == topic), "{got:?}");
        let said: Vec<(String, Option<String>)> = got
            .iter()
            .map(|(_, p)| {
                (
                    p["event"].as_str().unwrap().to_owned(),
                    p["reason"].as_str().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(takeover_in_order(reasons(&said)), expected);
    }

    // A client cannot speak for the broker: its publish on the internal
    // topic reaches nobody and changes nothing.
    let mut forger = Raw::login(&w.s.mqtt, V5, "forger", &w.pump, None).await;
    let code = forger
        .publish1(1, "$ferrule/devices/pump/connectivity", br#"{"device":"pump","event":"connected","ts":1,"client_id":"x","address":"1.2.3.4:5","protocol":"5.0"}"#)
        .await;
    assert!(code.is_error(), "{code:?}");
    let connected = heard(&mut obs, 1).await;
    // The forger's own connection is the only thing heard.
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert_eq!(connected[0].1["event"], "connected");
    assert_eq!(connected[0].1["client_id"], "forger");
    obs.expect_silence(Duration::from_millis(300)).await;
    let d = device_when(api, "pump", "online", |d| d["online"] == true).await;
    assert_eq!(d["client_id"], "forger");
}

#[tokio::test]
async fn a_restart_brings_devices_back_offline_saying_why() {
    let w = World::start().await;
    let (token, credential) = create_device_with_credential(&w.admin, "pump-2").await;
    let mut link = Link::start(&w.s, V5);
    link.cmd(&format!("connect a a 30 {}", w.pump)).await;
    link.cmd(&format!("connect b b 30 {token}")).await;
    device_when(&w.admin, "pump", "online", |d| d["online"] == true).await;
    device_when(&w.admin, "pump-2", "online", |d| d["online"] == true).await;
    // Its credential deleted: revoked.
    let r = w
        .admin
        .delete(&format!("/api/v1/devices/pump-2/credentials/{credential}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(link.gone("b").await, ReasonCode::ADMINISTRATIVE_ACTION.0);
    offline_because(&w.admin, "pump-2", "revoked").await;

    // A clean stop: the device was told the server is shutting down.
    let stopping = tokio::spawn(async move {
        let code = link.gone("a").await;
        (link, code)
    });
    let (s, _dir1) = restart(w.s, Signal::SIGTERM, ServerBuilder::new()).await;
    let (link, code) = stopping.await.unwrap();
    assert_eq!(code, ReasonCode::SERVER_SHUTTING_DOWN.0);
    let api = s.admin().await;
    let d = offline_because(&api, "pump", "server_shutdown").await;
    assert!(d["disconnected_at"].is_string(), "{d}");
    assert_eq!(
        reasons(&logged(&api, "pump").await),
        ["connected", "server_shutdown"]
    );
    offline_because(&api, "pump-2", "revoked").await;

    // A crash: nothing is said, and after the restart the device is offline
    // with its connection lost.
    let mut link2 = Link::start(&s, V3);
    link2.cmd(&format!("connect c c 30 {}", w.pump)).await;
    device_when(&api, "pump", "online", |d| {
        d["online"] == true && d["protocol"] == "3.1.1"
    })
    .await;
    // Saved as online before the crash.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _dir2) = restart(s, Signal::SIGKILL, ServerBuilder::new()).await;
    let api = s.admin().await;
    let d = offline_because(&api, "pump", "connection_lost").await;
    assert_eq!(d["protocol"], "3.1.1");
    assert!(listed(&api, true, 10).await.is_empty());
    drop(link);
    drop(link2);
}

/// A takeover's new connection and the old one's end race each other:
/// either may be told first. Puts the new connection first.
fn takeover_in_order(mut reasons: Vec<&str>) -> Vec<&str> {
    for i in 1..reasons.len() {
        if reasons[i - 1] == "takeover" && reasons[i] == "connected" {
            reasons.swap(i - 1, i);
        }
    }
    reasons
}

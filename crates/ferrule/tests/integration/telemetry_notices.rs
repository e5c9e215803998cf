//! Refusal notices: an MQTT 3.1.1 device, whose PUBACK cannot say why its
//! telemetry was refused, learns it on `devices/{id}/rejected` — with real
//! mosquitto clients — and the notices are rate-limited per device.

use std::process::Stdio;
use std::time::Duration;

use ferrule_mqtt::codec::{Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::mqtt_util::{Event, Raw, V3, World, publish_packet};
use crate::telemetry_util::{metric, refused_total};
use crate::util::ServerBuilder;

fn mosquitto(tool: &str, addr: &str, token: &str) -> Command {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut cmd = Command::new(tool);
    cmd.args(["-h", host, "-p", port, "-V", "mqttv311", "-u", token, "-i"])
        .arg(format!("{tool}-{}", std::process::id()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn mosquitto_pub(addr: &str, token: &str, args: &[&str]) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        mosquitto("mosquitto_pub", addr, token).args(args).output(),
    )
    .await
    .expect("mosquitto_pub hung")
    .expect("run mosquitto_pub");
    // MQTT 3.1.1: a refused QoS 1 publish still gets a plain PUBACK.
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_v311_device_learns_why_its_telemetry_was_refused() {
    let w = World::start().await;
    let addr = w.s.mqtt.clone();
    // A retained marker tells us when the subscriber is in place.
    mosquitto_pub(
        &addr,
        &w.pump,
        &["-q", "1", "-r", "-t", "devices/pump/ready", "-m", "1"],
    )
    .await;
    let mut sub = mosquitto("mosquitto_sub", &addr, &w.pump)
        .args(["-q", "0", "-C", "2", "-W", "15", "-F", "%t|%p"])
        .args(["-t", "devices/pump/ready", "-t", "devices/pump/rejected"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let next = async |lines: &mut tokio::io::Lines<_>| {
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("mosquitto_sub got nothing")
            .expect("read")
            .expect("a line")
    };
    assert_eq!(next(&mut lines).await, "devices/pump/ready|1");

    mosquitto_pub(
        &addr,
        &w.pump,
        &[
            "-q",
            "1",
            "-t",
            "devices/pump/telemetry",
            "-m",
            r#"{"ts": 1796194341, "values": {"t": 1}}"#,
        ],
    )
    .await;
    let line: String = next(&mut lines).await;
    let (topic, payload) = line.split_once('|').unwrap();
    assert_eq!(topic, "devices/pump/rejected");
    let notice: Value = serde_json::from_str(payload).unwrap();
    assert_eq!(notice["reason"], "timestamp_not_millis", "{notice}");
    assert_eq!(notice["topic"], "devices/pump/telemetry");
    assert!(
        notice["detail"]
            .as_str()
            .unwrap()
            .contains("looks like seconds"),
        "{notice}"
    );
    assert_eq!(
        metric(
            &w.s,
            r#"ferrule_telemetry_refusal_notices_total{tenant="default",outcome="sent"}"#
        )
        .await,
        1.0
    );
    assert_eq!(refused_total(&w.s, "timestamp_not_millis").await, 1.0);
    let _ = sub.wait().await;
    w.s.stop().await;
}

#[tokio::test]
async fn notices_are_rate_limited_per_device() {
    let w =
        World::with(ServerBuilder::new().env("FERRULE_TELEMETRY_REFUSAL_NOTICES_PER_SECOND", "2"))
            .await;
    let mut dev = Raw::login(&w.s.mqtt, V3, "pump", &w.pump, None).await;
    dev.subscribe(1, &[("devices/pump/rejected", QoS::AtMostOnce)])
        .await;
    for i in 0..20u16 {
        dev.send(Packet::Publish(publish_packet(
            "devices/pump/telemetry",
            b"not json",
            QoS::AtLeastOnce,
            Some(i + 10),
        )))
        .await;
    }
    let (mut acks, mut notices) = (0, Vec::new());
    loop {
        match dev.next(Duration::from_millis(1500)).await {
            Event::Packet(Packet::PubAck(_), _) => acks += 1,
            Event::Packet(Packet::Publish(p), _) => {
                notices.push(serde_json::from_slice::<Value>(&p.payload).unwrap())
            }
            Event::Silent => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks, 20);
    // 2 a second; the burst may straddle a second boundary.
    assert!((2..=4).contains(&notices.len()), "{notices:?}");
    assert_eq!(notices[0]["reason"], json!("not_json"));
    let limited = metric(
        &w.s,
        r#"ferrule_telemetry_refusal_notices_total{tenant="default",outcome="rate_limited"}"#,
    )
    .await;
    assert_eq!(limited as usize + notices.len(), 20);
    w.s.stop().await;
}

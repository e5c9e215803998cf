//! Broker limits from configuration: each overflow is refused the MQTT way
//! and counted in /metrics.

use std::time::Duration;

use bytes::BytesMut;
use ferrule_mqtt::codec::{self, Connect, MqttStr, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mqtt_persistence::{mosquitto, received_until_quiet};
use crate::util::ServerBuilder;

/// Opens a raw MQTT 5 connection and returns the CONNACK reason code, or
/// `None` when the server closed without one; the stream stays open.
async fn connect_v5(addr: &str, client_id: &str) -> (Option<ReasonCode>, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let connect = Connect::new(ProtocolVersion::V5, MqttStr::new(client_id).unwrap(), 60);
    let mut out = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V5,
        &mut out,
    )
    .unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::with_capacity(256);
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Some(Packet::ConnAck(ack))) =
                codec::decode(&mut buf, ProtocolVersion::V5, 1 << 20)
            {
                return Some(ack.reason_code);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("no answer to CONNECT");
    (code, stream)
}

#[tokio::test]
async fn connections_per_tenant_are_capped_with_quota_exceeded() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .env("FERRULE_MQTT_MAX_CONNECTIONS_PER_TENANT", "2")
        .start()
        .await;
    let (a, _keep_a) = connect_v5(&s.mqtt, "a").await;
    let (b, keep_b) = connect_v5(&s.mqtt, "b").await;
    assert_eq!(
        (a, b),
        (Some(ReasonCode::SUCCESS), Some(ReasonCode::SUCCESS))
    );
    let (c, _) = connect_v5(&s.mqtt, "c").await;
    assert_eq!(c, Some(ReasonCode::QUOTA_EXCEEDED));
    // A slot frees when a client leaves.
    drop(keep_b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (d, _keep_d) = connect_v5(&s.mqtt, "d").await;
    assert_eq!(d, Some(ReasonCode::SUCCESS));
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        metrics.contains(r#"ferrule_mqtt_refused_total{reason="max_connections_tenant"} 1"#),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn connection_rate_per_ip_is_limited() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .config_file("[mqtt]\nmax_connect_rate_per_ip = 3\n")
        .start()
        .await;
    let mut accepted = 0;
    let mut streams = Vec::new();
    for i in 0..6 {
        let (code, stream) = connect_v5(&s.mqtt, &format!("r{i}")).await;
        if code == Some(ReasonCode::SUCCESS) {
            accepted += 1;
        }
        streams.push(stream);
    }
    // Six connects within a second: three pass (a window boundary may let
    // at most three more through).
    assert!((3..6).contains(&accepted), "accepted {accepted}");
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        metrics.contains(r#"ferrule_mqtt_refused_total{reason="connect_rate"}"#),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_limits_are_startup_errors() {
    let out = ServerBuilder::new()
        .env("FERRULE_MQTT_MAX_INFLIGHT", "0")
        .run_to_exit()
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("mqtt.max_inflight") && out.stderr.contains("at least 1"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_full_offline_queue_drops_and_counts() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .env("FERRULE_MQTT_MAX_QUEUED", "3")
        .start()
        .await;
    let keeper = [
        "-V", "mqttv5", "-i", "q", "-c", "-x", "600", "-q", "1", "-t", "q/#",
    ];
    mosquitto("mosquitto_sub", &s.mqtt, &[&keeper[..], &["-E"]].concat()).await;
    for i in 0..5 {
        let m = format!("m{i}");
        mosquitto(
            "mosquitto_pub",
            &s.mqtt,
            &["-q", "1", "-t", "q/x", "-m", &m],
        )
        .await;
    }
    assert_eq!(
        received_until_quiet(&s.mqtt, &keeper, 2).await,
        ["m0", "m1", "m2"]
    );
    let metrics = s.anon().get("/metrics").await.text;
    assert!(
        metrics.contains(r#"ferrule_mqtt_messages_dropped_total{reason="queue_full"} 2"#),
        "{metrics}"
    );
    s.stop().await;
}

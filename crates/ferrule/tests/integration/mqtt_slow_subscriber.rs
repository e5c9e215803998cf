//! A subscriber that stops reading holds a bounded amount of the server's
//! memory: its session's queue is bounded in bytes (`mqtt.max_queued_bytes`)
//! as well as in messages, and what is dropped beyond is counted per tenant.

use std::time::Duration;

use ferrule_mqtt::codec::{self, Packet, QoS};
use tokio_util::bytes::BytesMut;

use crate::mqtt_util::{Raw, V5, connect_packet, publish_packet};
use crate::util::{Server, ServerBuilder};

/// The server's resident memory, in bytes.
fn rss(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// The value of `ferrule_mqtt_messages_dropped_total{reason=REASON,tenant=TENANT}`.
pub fn dropped(metrics: &str, reason: &str, tenant: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("ferrule_mqtt_messages_dropped_total{"))
        .filter(|l| l.contains(&format!("reason=\"{reason}\"")))
        .filter(|l| l.contains(&format!("tenant=\"{tenant}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn a_subscriber_that_never_reads_holds_bounded_memory() {
    let s = ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .config_file("[mqtt]\nmax_queued_bytes = 1048576\n")
        .start()
        .await;
    let mut sub = Raw::connect(&s.mqtt, connect_packet(V5, "sleeper", None, None))
        .await
        .0;
    sub.subscribe(1, &[("flood/#", QoS::AtMostOnce)]).await;
    // From here on the subscriber never reads.
    let (mut publisher, _, _) =
        Raw::connect(&s.mqtt, connect_packet(V5, "flooder", None, None)).await;
    let before = rss(&s);

    // 96 MiB in 64 KiB messages: far beyond the 1 MiB bound, well within
    // the message-count bound (1,536 < 10,000).
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
    for _ in 0..96 {
        publisher.send_raw(&chunk).await;
    }
    // A round trip: every publish before it has been routed.
    publisher.send(Packet::PingReq).await;
    assert!(matches!(publisher.recv().await, Packet::PingResp));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let grown = rss(&s).saturating_sub(before);
    let metrics = s.anon().get("/metrics").await.text;
    let drops = dropped(&metrics, "queue_bytes", "default");
    eprintln!(
        "server RSS grew by {} KiB; {drops} messages dropped",
        grown / 1024
    );
    assert!(drops > 0, "no queue_bytes drops counted:\n{metrics}");
    // The session holds at most 1 MiB; socket buffers and the allocator's
    // slack account for the rest. Unbounded, it would hold ~90 MiB.
    assert!(
        grown < 40 * 1024 * 1024,
        "server RSS grew by {} MiB for a subscriber that does not read",
        grown >> 20
    );
    drop(sub);
    s.stop().await;
}

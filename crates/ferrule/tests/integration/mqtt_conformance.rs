//! MQTT conformance at the edges, with raw packets: what arrives behind
//! CONNECT, how a connection is closed with a reason (readable, not reset),
//! the Receive Maximum over QoS 1 and 2, and a session's end racing its
//! resumption.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrule_mqtt::codec::{self, Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::bytes::BytesMut;

use crate::mqtt_util::{
    Event, Raw, V3, V5, WAIT, connect_packet, publish_packet, subscribe_packet,
};
use crate::util::{Server, ServerBuilder};

async fn anonymous_server() -> Server {
    ServerBuilder::new()
        .arg("--mqtt-allow-anonymous")
        .start()
        .await
}

fn encode(out: &mut BytesMut, version: ProtocolVersion, packet: Packet) {
    codec::encode(&packet, version, out).expect("encode");
}

fn anonymous_connect(version: ProtocolVersion, client_id: &str) -> Connect {
    connect_packet(version, client_id, None, None)
}

#[tokio::test]
async fn packets_pipelined_behind_connect_are_handled_at_once() {
    let s = anonymous_server().await;
    for version in [V3, V5] {
        let mut raw = Raw::open(&s.mqtt, version).await;
        // CONNECT and SUBSCRIBE in one write: the broker reads both at once.
        let mut out = BytesMut::new();
        encode(
            &mut out,
            version,
            Packet::Connect(Box::new(anonymous_connect(version, "pipeliner"))),
        );
        encode(
            &mut out,
            version,
            Packet::Subscribe(subscribe_packet(7, &[("a/b", QoS::AtLeastOnce)])),
        );
        raw.send_raw(&out).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        // Nothing else is sent: the SUBACK must come anyway.
        match raw.next(Duration::from_secs(2)).await {
            Event::Packet(Packet::SubAck(a), _) => assert_eq!(a.packet_id.get(), 7),
            other => panic!("{version:?}: expected SUBACK without another packet, got {other:?}"),
        }
    }
    s.stop().await;
}

/// Reads packets until DISCONNECT; then what the next read says: `Ok(0)`
/// (an orderly close) or the error (a reset).
async fn read_disconnect(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
) -> (Disconnect, std::io::Result<usize>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(p) = codec::decode(&mut buf, V5, 1 << 24).expect("decodable") {
            if let Packet::Disconnect(d) = p {
                let mut rest = [0u8; 1024];
                let after = tokio::time::timeout_at(deadline, stream.read(&mut rest))
                    .await
                    .expect("the broker closes after its DISCONNECT");
                return (d, after);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => panic!("no DISCONNECT within {WAIT:?}"),
            Ok(Ok(0)) => panic!("closed without DISCONNECT"),
            Ok(Err(e)) => panic!("connection reset before the DISCONNECT could be read: {e}"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Keeps writing PINGREQs for `how_long`, as a client that has not yet
/// read the DISCONNECT would; returns the first write error.
fn keep_writing(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    how_long: Duration,
) -> tokio::task::JoinHandle<Option<std::io::Error>> {
    tokio::spawn(async move {
        let mut ping = BytesMut::new();
        encode(&mut ping, V5, Packet::PingReq);
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            if let Err(e) = w.write_all(&ping).await {
                return Some(e);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = w.shutdown().await;
        None
    })
}

/// Connects anonymously over MQTT 5 and returns the halves after CONNACK.
async fn connected_v5(
    addr: &str,
    connect: Connect,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let (raw, ack, _) = Raw::connect(addr, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    raw.into_stream().into_split()
}

#[tokio::test]
async fn a_disconnect_reason_is_readable_before_the_close() {
    let s = anonymous_server().await;
    let (mut r, mut w) = connected_v5(&s.mqtt, anonymous_connect(V5, "greedy")).await;
    // One more unreleased QoS 2 message than the Receive Maximum (1,024).
    let mut out = BytesMut::new();
    for id in 1..=1025u16 {
        encode(
            &mut out,
            V5,
            Packet::Publish(publish_packet("q2/x", b"v", QoS::ExactlyOnce, Some(id))),
        );
    }
    w.write_all(&out).await.expect("write the pipeline");
    // The client goes on writing while the broker closes: it must meet the
    // DISCONNECT and an orderly close, not a reset.
    let writer = keep_writing(w, Duration::from_millis(600));
    let (d, after) = read_disconnect(&mut r).await;
    assert_eq!(d.reason_code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    assert!(
        matches!(after, Ok(0)),
        "expected an orderly close after the DISCONNECT, got {after:?}"
    );
    let write_error = writer.await.expect("writer");
    assert!(
        write_error.is_none(),
        "the client's writes were reset right after the DISCONNECT: {write_error:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn qos1_acks_waiting_for_storage_count_against_receive_maximum() {
    let s = anonymous_server().await;
    // A persistent session, offline: messages for it are stored before
    // their publisher's PUBACK goes out.
    let mut keep = anonymous_connect(V5, "offline");
    keep.clean_start = true;
    keep.properties.session_expiry_interval = Some(600);
    let mut sub = Raw::connect(&s.mqtt, keep).await.0;
    assert_eq!(
        sub.subscribe(1, &[("q1/#", QoS::AtLeastOnce)]).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    sub.send(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
        .await;
    assert!(matches!(sub.next(WAIT).await, Event::Closed));

    let (mut r, mut w) = connected_v5(&s.mqtt, anonymous_connect(V5, "pipeliner")).await;
    // Eight times the Receive Maximum of QoS 1 publishes in one go: each
    // commit writes the offline session whole, so commits grow slower as
    // its queue grows, and the PUBACKs waiting for them pile up.
    let mut out = BytesMut::new();
    for id in 1..=8192u16 {
        encode(
            &mut out,
            V5,
            Packet::Publish(publish_packet("q1/x", b"v", QoS::AtLeastOnce, Some(id))),
        );
    }
    w.write_all(&out).await.expect("write the pipeline");
    let writer = keep_writing(w, Duration::from_millis(300));
    let (d, _) = read_disconnect(&mut r).await;
    assert_eq!(d.reason_code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    let _ = writer.await;
    s.stop().await;
}

/// One client id, session expiry 0, over and over: each connection sends
/// DISCONNECT and the next one's CONNECT (clean start 0) follows at once,
/// so the resume races the end of the session. A CONNACK must never be
/// followed by DISCONNECT 0x8E (the session ending under the new
/// connection). Returns how many pairs ran.
async fn disconnect_reconnect_pairs(addr: String, client_id: String, until: Instant) -> usize {
    let resume = || {
        let mut c = anonymous_connect(V5, &client_id);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(0);
        c
    };
    let mut bye = BytesMut::new();
    encode(
        &mut bye,
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)),
    );
    let mut hello = BytesMut::new();
    encode(&mut hello, V5, Packet::Connect(Box::new(resume())));
    let mut ping = BytesMut::new();
    encode(&mut ping, V5, Packet::PingReq);

    let (mut current, ack, _) = Raw::connect(&addr, resume()).await;
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let mut pairs = 0;
    while Instant::now() < until {
        let mut next = Raw::open(&addr, V5).await;
        current.send_raw(&bye).await;
        next.send_raw(&hello).await;
        let present = match next.recv().await {
            Packet::ConnAck(a) => {
                assert_eq!(a.reason_code, ReasonCode::SUCCESS);
                a.session_present
            }
            other => panic!("expected CONNACK, got {other:?}"),
        };
        next.send_raw(&ping).await;
        match next.recv().await {
            Packet::PingResp => {}
            other => {
                panic!("after CONNACK (session present {present}) the connection got {other:?}")
            }
        }
        drop(current);
        current = next;
        pairs += 1;
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_racing_the_end_of_its_session_keeps_it() {
    let s = anonymous_server().await;
    let until = Instant::now() + Duration::from_secs(4);
    let total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let addr = s.mqtt.clone();
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let n = disconnect_reconnect_pairs(addr, format!("racer-{i}"), until).await;
            total.fetch_add(n, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await.expect("no racer saw its session end under it");
    }
    let pairs = total.load(Ordering::Relaxed);
    eprintln!("{pairs} disconnect/reconnect pairs");
    assert!(pairs > 500, "too few pairs ({pairs}) to exercise the race");
    s.stop().await;
}

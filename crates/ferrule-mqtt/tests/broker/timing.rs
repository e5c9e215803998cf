//! The broker's timing on paused tokio time: keep alive, will
//! delay, message expiry (queued and retained) and session expiry. Time only moves when every
//! task waits (tokio advances it to the next timer), so a test that spans
//! minutes of protocol time takes milliseconds, and the durations it
//! asserts are exact.

use std::time::Duration;

use crate::harness::{self, TestBroker, connect_v5, persistent_v5, s};
use ferrule_mqtt::codec::{
    Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, Will,
};
use tokio::time::{Instant, sleep};

const SECOND: Duration = Duration::from_secs(1);

/// A QoS 1 will on `status`, sent `delay_secs` after the connection is lost.
fn will(payload: &'static [u8], delay_secs: u32) -> Will {
    let mut will = Will {
        topic: s("status"),
        payload: payload.into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    if delay_secs > 0 {
        will.properties.will_delay_interval = Some(delay_secs);
    }
    will
}

/// A client subscribed to the wills on `status`.
async fn observer(broker: &TestBroker) -> harness::Client {
    let (mut obs, _) = broker.connect(connect_v5("observer", 0)).await;
    obs.subscribe("status").await;
    obs
}

// ------------------------------------------------------------- keep alive

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let broker = TestBroker::start();
    let mut obs = observer(&broker).await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut c = Connect::new(version, s("silent"), 10);
        c.will = Some(will(b"timed out", 0));
        let (mut client, ack) = broker.connect(c).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        let t0 = Instant::now();
        let got = client.until_closed().await;
        // MQTT 5 §3.1.2.10: one and a half keep alive periods.
        assert_eq!(t0.elapsed(), 15 * SECOND, "{version:?}");
        if version == ProtocolVersion::V5 {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
                "expected DISCONNECT 0x8D, got {got:?}"
            );
        } else {
            assert!(got.is_empty(), "3.1.1: the server just closes; got {got:?}");
        }
        // Timing out is not a normal DISCONNECT: the will goes out.
        let w = obs.recv_publish(SECOND).await;
        assert_eq!(&w.payload[..], b"timed out", "{version:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_within_its_keep_alive_stays_connected() {
    let broker = TestBroker::start();
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let (mut client, _) = broker.connect(Connect::new(version, s("pinger"), 10)).await;
        // Each gap is under 1.5 × 10 s; together they are far past it.
        for _ in 0..5 {
            sleep(14 * SECOND).await;
            client.send(Packet::PingReq).await;
            assert_eq!(client.expect(SECOND).await, Packet::PingResp, "{version:?}");
        }
        // A publish is traffic too.
        sleep(14 * SECOND).await;
        client.publish(Publish::new(s("t/alive"), "x"), 1).await;
        sleep(14 * SECOND).await;
        client.send(Packet::PingReq).await;
        assert_eq!(client.expect(SECOND).await, Packet::PingResp, "{version:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_servers_keep_alive_cap_is_announced_and_enforced() {
    let broker = TestBroker::with(|c| c.max_keepalive = 5);
    let (mut client, ack) = broker.connect(connect_v5("optimist", 60)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(5));
    let t0 = Instant::now();
    let got = client.until_closed().await;
    assert_eq!(t0.elapsed(), Duration::from_millis(7500));
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT),
        "expected DISCONNECT 0x8D, got {got:?}"
    );
}

// ------------------------------------------------------------- will delay

/// Connects `client_id` with a session of `session_expiry_secs` and a will
/// delayed by `will_delay_secs`, then loses the connection (no DISCONNECT).
async fn lose_connection_with_will(
    broker: &TestBroker,
    client_id: &str,
    session_expiry_secs: u32,
    payload: &'static [u8],
    will_delay_secs: u32,
) {
    let mut c = persistent_v5(client_id, true, session_expiry_secs);
    c.will = Some(will(payload, will_delay_secs));
    let (client, _) = broker.connect(c).await;
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_delayed_will_comes_after_its_delay() {
    let broker = TestBroker::start();
    let mut obs = observer(&broker).await;
    lose_connection_with_will(&broker, "late", 60, b"late", 5).await;
    let t0 = Instant::now();
    obs.expect_silence(5 * SECOND - Duration::from_millis(1))
        .await;
    let w = obs.recv_publish(SECOND).await;
    assert_eq!(&w.payload[..], b"late");
    assert_eq!(t0.elapsed(), 5 * SECOND);
}

#[tokio::test(start_paused = true)]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let broker = TestBroker::start();
    let mut obs = observer(&broker).await;
    lose_connection_with_will(&broker, "back-soon", 60, b"late", 5).await;
    sleep(4 * SECOND).await;
    let (_back, ack) = broker.connect(persistent_v5("back-soon", false, 60)).await;
    assert!(ack.session_present, "the session must be resumed");
    obs.expect_silence(60 * SECOND).await;
}

#[tokio::test(start_paused = true)]
async fn a_will_delay_longer_than_the_session_ends_with_the_session() {
    // MQTT 5 §3.1.3.2.2: the will goes at its delay or at the session's
    // end, whichever comes first.
    let broker = TestBroker::start();
    let mut obs = observer(&broker).await;
    lose_connection_with_will(&broker, "short-lived", 2, b"session over", 30).await;
    let t0 = Instant::now();
    let w = obs.recv_publish(5 * SECOND).await;
    assert_eq!(&w.payload[..], b"session over");
    assert_eq!(t0.elapsed(), 2 * SECOND);
}

// ---------------------------------------------------------- message expiry

#[tokio::test(start_paused = true)]
async fn an_expired_message_is_not_delivered_from_the_queue() {
    let broker = TestBroker::start();
    let (mut sub, _) = broker.connect(persistent_v5("offline", true, 3600)).await;
    sub.subscribe("x/#").await;
    sub.send(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
        .await;
    sub.until_closed().await;

    let (mut publisher, _) = broker.connect(connect_v5("publisher", 0)).await;
    for (i, (topic, expiry)) in [("x/short", Some(1)), ("x/long", Some(60)), ("x/none", None)]
        .into_iter()
        .enumerate()
    {
        let mut p = Publish::new(s(topic), topic.to_owned());
        p.properties.message_expiry_interval = expiry;
        publisher.publish(p, i as u16 + 1).await;
    }
    sleep(2 * SECOND).await;

    let (mut back, ack) = broker.connect(persistent_v5("offline", false, 3600)).await;
    assert!(ack.session_present);
    let long = back.recv_publish(SECOND).await;
    assert_eq!(&long.payload[..], b"x/long");
    // The remaining interval, not the one published (MQTT 5 §3.3.2.3.3).
    assert_eq!(long.properties.message_expiry_interval, Some(58));
    let none = back.recv_publish(SECOND).await;
    assert_eq!(&none.payload[..], b"x/none");
    assert_eq!(none.properties.message_expiry_interval, None);
    back.expect_silence(SECOND).await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_retained_message_is_gone() {
    let broker = TestBroker::start();
    let (mut publisher, _) = broker.connect(connect_v5("publisher", 0)).await;
    for (i, (topic, expiry)) in [("r/short", 1), ("r/long", 60)].into_iter().enumerate() {
        let mut p = Publish::new(s(topic), topic.to_owned());
        p.retain = true;
        p.properties.message_expiry_interval = Some(expiry);
        publisher.publish(p, i as u16 + 1).await;
    }
    sleep(2 * SECOND).await;

    let (mut late, _) = broker.connect(connect_v5("late", 0)).await;
    late.subscribe("r/#").await;
    let long = late.recv_publish(SECOND).await;
    assert_eq!(&long.payload[..], b"r/long");
    assert!(long.retain, "a retained message is delivered as retained");
    // Delivered with what is left of its expiry (MQTT 5 §3.3.2.3.3).
    assert_eq!(long.properties.message_expiry_interval, Some(58));
    late.expect_silence(SECOND).await;
}

// ---------------------------------------------------------- session expiry

/// Connects `client_id` with a session that lives `expiry_secs` past the
/// connection, subscribes, and disconnects normally.
async fn leave_session(broker: &TestBroker, client_id: &str, expiry_secs: u32) {
    let (mut c, _) = broker
        .connect(persistent_v5(client_id, true, expiry_secs))
        .await;
    c.subscribe("e").await;
    c.send(Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
        .await;
    c.until_closed().await;
}

/// Whether `client_id`'s session is still there (and resumes it).
async fn session_present(broker: &TestBroker, client_id: &str) -> bool {
    let (_c, ack) = broker.connect(persistent_v5(client_id, false, 60)).await;
    ack.session_present
}

#[tokio::test(start_paused = true)]
async fn a_session_is_kept_until_its_expiry_and_gone_after() {
    let broker = TestBroker::start();
    leave_session(&broker, "kept", 10).await;
    leave_session(&broker, "gone", 10).await;
    sleep(9 * SECOND).await;
    assert!(
        session_present(&broker, "kept").await,
        "9 s into a 10 s expiry"
    );
    sleep(2 * SECOND).await;
    assert!(
        !session_present(&broker, "gone").await,
        "11 s into a 10 s expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_with_expiry_zero_ends_at_the_disconnect() {
    let broker = TestBroker::start();
    leave_session(&broker, "zero", 0).await;
    assert!(!session_present(&broker, "zero").await);
}

/// Connects `client_id` with session expiry `at_connect`, subscribes, and
/// disconnects with session expiry `at_disconnect`; returns what the broker
/// sent before it closed.
async fn disconnect_with_expiry(
    broker: &TestBroker,
    client_id: &str,
    at_connect: u32,
    at_disconnect: u32,
) -> Vec<Packet> {
    let (mut c, _) = broker
        .connect(persistent_v5(client_id, true, at_connect))
        .await;
    c.subscribe("e").await;
    let mut bye = Disconnect::new(ReasonCode::SUCCESS);
    bye.properties.session_expiry_interval = Some(at_disconnect);
    c.send(Packet::Disconnect(bye)).await;
    c.until_closed().await
}

#[tokio::test(start_paused = true)]
async fn the_disconnect_may_shorten_the_session_expiry() {
    let broker = TestBroker::start();
    let got = disconnect_with_expiry(&broker, "shorter", 60, 0).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(!session_present(&broker, "shorter").await);
}

#[tokio::test(start_paused = true)]
async fn the_disconnect_cannot_revive_a_session_that_ends_with_its_connection() {
    // MQTT 5 §3.14.2.2.2: expiry 0 at CONNECT, then non-zero at DISCONNECT,
    // is a Protocol Error, and the session still ends.
    let broker = TestBroker::start();
    let got = disconnect_with_expiry(&broker, "revive", 0, 30).await;
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR),
        "expected DISCONNECT 0x82, got {got:?}"
    );
    assert!(!session_present(&broker, "revive").await);
}

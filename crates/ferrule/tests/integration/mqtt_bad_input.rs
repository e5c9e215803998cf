//! Bad input on the MQTT port, byte by byte. Each case checks what the
//! broker answers (MQTT 5: a DISCONNECT with the reason code MQTT 5 §4.13
//! prescribes, then close; 3.1.1: just close), that the offender's will is
//! published (closing on a protocol error is not a normal DISCONNECT), and
//! that a well-behaved client connected all along keeps getting messages.

use std::num::NonZeroU16;
use std::time::Duration;

use ferrule_mqtt::codec::{ConnAck, DecodeError, Packet, ProtocolVersion, QoS, ReasonCode, Will};

use crate::mqtt_util::{Event, Raw, V3, V5, World, connect_packet, publish_packet, s};
use crate::util::ADMIN_PASSWORD;

/// A server, with an observer subscribed to device pump's topics.
struct Stage {
    w: World,
    observer: Raw,
}

async fn stage() -> Stage {
    let w = World::start().await;
    let mut observer = Raw::login(
        &w.s.mqtt,
        V5,
        "observer",
        "user:admin@localhost",
        Some(ADMIN_PASSWORD),
    )
    .await;
    observer
        .subscribe(1, &[("devices/pump/#", QoS::AtMostOnce)])
        .await;
    Stage { w, observer }
}

/// Appends a Variable Byte Integer.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// A PUBLISH built by hand, so it can carry what an encoder refuses.
fn raw_publish(
    version: ProtocolVersion,
    qos: u8,
    topic: &[u8],
    packet_id: Option<u16>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if version == V5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | (qos << 1)];
    varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl Stage {
    /// Device pump, connected with a will, about to misbehave.
    async fn offender(&self, version: ProtocolVersion) -> (Raw, ConnAck) {
        let mut c = connect_packet(version, "offender", Some(&self.w.pump), None);
        c.will = Some(Will {
            topic: s("devices/pump/status"),
            payload: b"offender gone".to_vec().into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let (raw, ack, _) = Raw::connect(&self.w.s.mqtt, c).await;
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        (raw, ack)
    }

    /// The broker answers with DISCONNECT `code` (MQTT 5) or nothing
    /// (3.1.1), and closes; then the offender's will arrives and the
    /// broker still routes for everyone else.
    async fn expect_kicked(&mut self, raw: &mut Raw, code: ReasonCode, what: &str) {
        let got = raw.expect_close().await;
        if raw.version == V5 {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason_code == code),
                "{what}: expected DISCONNECT {code:?}, got {got:?}"
            );
        } else {
            assert!(got.is_empty(), "{what}: 3.1.1 just closes; got {got:?}");
        }
        self.still_serving(true, what).await;
    }

    /// The observer gets the will (if expected), and a fresh client's
    /// message.
    async fn still_serving(&mut self, will: bool, what: &str) {
        if will {
            let m = self.observer.recv_publish().await;
            assert_eq!(
                (m.topic.as_str(), &m.payload[..]),
                ("devices/pump/status", &b"offender gone"[..]),
                "{what}: the offender's will"
            );
        }
        let mut good = Raw::login(&self.w.s.mqtt, V5, "good", &self.w.pump, None).await;
        assert_eq!(
            good.publish1(1, "devices/pump/alive", what.as_bytes())
                .await,
            ReasonCode::SUCCESS
        );
        let m = self.observer.recv_publish().await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("devices/pump/alive", what.as_bytes()),
            "{what}: the observer still gets messages"
        );
        self.observer
            .expect_silence(Duration::from_millis(100))
            .await;
    }
}

#[tokio::test]
async fn a_truncated_packet_then_close_is_just_a_lost_connection() {
    let mut st = stage().await;
    for v in [V3, V5] {
        let (mut raw, _) = st.offender(v).await;
        // Announces 100 bytes, sends 6, hangs up.
        raw.send_raw(&[0x30, 100, 0x00, 0x10, b'd', b'e']).await;
        drop(raw);
        st.still_serving(true, "truncated PUBLISH").await;
    }
    // The same before CONNECT: nothing to publish, nothing breaks.
    let mut raw = Raw::open(&st.w.s.mqtt, V5).await;
    raw.send_raw(&[0x10, 50, 0x00, 0x04, b'M', b'Q']).await;
    drop(raw);
    st.still_serving(false, "truncated CONNECT").await;
}

#[tokio::test]
async fn a_packet_over_the_maximum_size_gets_0x95() {
    let mut st = stage().await;
    for v in [V5, V3] {
        let (mut raw, ack) = st.offender(v).await;
        let max = ack
            .properties
            .maximum_packet_size
            .map_or(1024 * 1024, |m| m.get() as usize);
        // Only the fixed header: the broker must refuse on the announced
        // length, without waiting for (or buffering) the body.
        let mut header = vec![0x30];
        varint(&mut header, max + 1);
        header.extend_from_slice(&[0x00, 0x03, b'a', b'/', b'b']);
        raw.send_raw(&header).await;
        st.expect_kicked(&mut raw, ReasonCode::PACKET_TOO_LARGE, "packet too large")
            .await;
    }
}

#[tokio::test]
async fn a_malformed_remaining_length_gets_0x81() {
    let mut st = stage().await;
    for v in [V5, V3] {
        let (mut raw, _) = st.offender(v).await;
        // Five bytes of Variable Byte Integer: at most four are allowed.
        raw.send_raw(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).await;
        st.expect_kicked(&mut raw, ReasonCode::MALFORMED_PACKET, "5-byte varint")
            .await;
    }
}

#[tokio::test]
async fn a_second_connect_gets_0x82() {
    // [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
    let mut st = stage().await;
    for v in [V5, V3] {
        let (mut raw, _) = st.offender(v).await;
        let again = connect_packet(v, "offender", Some(&st.w.pump), None);
        raw.send(Packet::Connect(Box::new(again))).await;
        st.expect_kicked(&mut raw, ReasonCode::PROTOCOL_ERROR, "second CONNECT")
            .await;
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_topic_gets_0x81() {
    // [MQTT-1.5.4-1]: ill-formed UTF-8 is a Malformed Packet.
    let mut st = stage().await;
    for v in [V5, V3] {
        let (mut raw, _) = st.offender(v).await;
        raw.send_raw(&raw_publish(v, 0, b"devices/pump/\xc3\x28", None, b"x"))
            .await;
        st.expect_kicked(
            &mut raw,
            ReasonCode::MALFORMED_PACKET,
            "invalid UTF-8 topic",
        )
        .await;
    }
}

#[tokio::test]
async fn a_wildcard_in_a_publish_topic_gets_0x90() {
    // [MQTT-3.3.2-2]: a Topic Name must not contain wildcards.
    let mut st = stage().await;
    for (v, topic) in [
        (V5, &b"devices/pump/#"[..]),
        (V5, b"devices/+/x"),
        (V3, b"devices/pump/#"),
    ] {
        let (mut raw, _) = st.offender(v).await;
        raw.send_raw(&raw_publish(v, 1, topic, Some(1), b"x")).await;
        st.expect_kicked(&mut raw, ReasonCode::TOPIC_NAME_INVALID, "wildcard topic")
            .await;
    }
}

#[tokio::test]
async fn packet_id_zero_is_refused() {
    // [MQTT-2.2.1-3]: QoS 1/2 need a non-zero Packet Identifier. The
    // broker closes with whatever the codec maps it to, which must be one
    // of the two codes for a broken packet.
    let expected = DecodeError::ZeroPacketId.reason_code();
    assert!(
        expected == ReasonCode::PROTOCOL_ERROR || expected == ReasonCode::MALFORMED_PACKET,
        "the codec maps packet id 0 to {expected:?}"
    );
    let mut st = stage().await;
    for (v, qos) in [(V5, 1), (V5, 2), (V3, 1)] {
        let (mut raw, _) = st.offender(v).await;
        raw.send_raw(&raw_publish(v, qos, b"devices/pump/zero", Some(0), b"x"))
            .await;
        st.expect_kicked(&mut raw, expected, "packet id 0").await;
    }
}

#[tokio::test]
async fn bad_topic_aliases_are_refused() {
    // MQTT 5 §3.3.2.3.4: an alias above the server's Topic Alias Maximum
    // gets 0x94; an alias never set up, with an empty topic, is a Protocol
    // Error.
    let mut st = stage().await;
    let (mut raw, ack) = st.offender(V5).await;
    let max = ack.properties.topic_alias_maximum.unwrap_or(0);
    let mut p = publish_packet("devices/pump/x", b"x", QoS::AtMostOnce, None);
    p.properties.topic_alias = NonZeroU16::new(max.saturating_add(1));
    raw.send(Packet::Publish(p)).await;
    st.expect_kicked(
        &mut raw,
        ReasonCode::TOPIC_ALIAS_INVALID,
        "alias above maximum",
    )
    .await;

    let (mut raw, _) = st.offender(V5).await;
    let mut p = publish_packet("devices/pump/x", b"x", QoS::AtMostOnce, None);
    p.topic = Default::default();
    p.properties.topic_alias = NonZeroU16::new(1);
    raw.send(Packet::Publish(p)).await;
    st.expect_kicked(&mut raw, ReasonCode::PROTOCOL_ERROR, "unknown alias")
        .await;
}

#[tokio::test]
async fn a_first_packet_other_than_connect_is_closed_without_connack() {
    // [MQTT-3.1.0-1]: the first packet must be CONNECT.
    let mut st = stage().await;
    let cases: [(&str, &[u8]); 4] = [
        ("PINGREQ", &[0xc0, 0x00]),
        ("PUBLISH", &[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i']),
        (
            "SUBSCRIBE",
            &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'#', 0x00],
        ),
        ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::open(&st.w.s.mqtt, V5).await;
        raw.send_raw(bytes).await;
        let got = raw.expect_close().await;
        assert!(
            got.is_empty(),
            "{what} first: got {got:?}, expected a plain close"
        );
        st.still_serving(false, what).await;
    }
}

#[tokio::test]
async fn a_refused_login_followed_by_packets_sends_nothing_more() {
    // Packets pipelined after a refused CONNECT are not processed: a
    // client that fails to log in cannot publish by not waiting.
    let mut st = stage().await;
    let mut bytes = Vec::new();
    let mut out = tokio_util::bytes::BytesMut::new();
    let c = connect_packet(V5, "pipeliner", Some("pump@default"), Some("wrong"));
    ferrule_mqtt::codec::encode(&Packet::Connect(Box::new(c)), V5, &mut out).unwrap();
    bytes.extend_from_slice(&out);
    bytes.extend_from_slice(&raw_publish(V5, 0, b"devices/pump/sneaky", None, b"x"));
    let mut raw = Raw::open(&st.w.s.mqtt, V5).await;
    raw.send_raw(&bytes).await;
    let got = raw.expect_close().await;
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        "got {got:?}"
    );
    match st.observer.next(Duration::from_millis(400)).await {
        Event::Silent => {}
        other => panic!("the refused client's PUBLISH was routed: {other:?}"),
    }
    st.still_serving(false, "pipelined after refusal").await;
}

#[tokio::test]
async fn too_many_unreleased_qos2_messages_get_0x93() {
    // MQTT 5 §3.3.4: a client may have at most the server's Receive
    // Maximum QoS 2 messages awaiting PUBREL; one more is 0x93.
    let mut st = stage().await;
    let (mut raw, ack) = st.offender(V5).await;
    let max = ack.properties.receive_maximum.map_or(65535, |m| m.get());
    let mut batch = Vec::new();
    for id in 1..=max {
        let mut out = tokio_util::bytes::BytesMut::new();
        let p = publish_packet("devices/pump/q2", b"x", QoS::ExactlyOnce, Some(id));
        ferrule_mqtt::codec::encode(&Packet::Publish(p), V5, &mut out).unwrap();
        batch.extend_from_slice(&out);
    }
    raw.send_raw(&batch).await;
    for id in 1..=max {
        match raw.recv().await {
            Packet::PubRec(a) => assert_eq!(
                (a.packet_id.get(), a.reason_code),
                (id, ReasonCode::SUCCESS)
            ),
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
        // The observer (QoS 0) gets each as it is routed.
        st.observer.recv_publish().await;
    }
    raw.send_raw(&raw_publish(
        V5,
        2,
        b"devices/pump/q2",
        Some(max.wrapping_add(1).max(1)),
        b"x",
    ))
    .await;
    st.expect_kicked(
        &mut raw,
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
        "receive maximum",
    )
    .await;
}

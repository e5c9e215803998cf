//! Property tests for the MQTT codec: round trips of arbitrary valid
//! packets in both versions, robustness against arbitrary and mutated
//! bytes, and the streaming guarantees (prefixes are incomplete, byte-wise
//! feeding equals whole feeding, packets back to back decode in order).

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use ferrule_mqtt::codec::{
    Ack, Auth, ConnAck, Connect, Disconnect, MqttStr, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will, decode, encode, encoded_len,
};
use proptest::prelude::*;

use ProtocolVersion::{V5, V311};

// ---------------------------------------------------------------- strategies

/// Any MQTT string: arbitrary Unicode except U+0000.
fn mqtt_str() -> impl Strategy<Value = MqttStr> {
    "[^\\x00]{0,10}".prop_map(|s| MqttStr::try_from(s).expect("valid MQTT string"))
}

/// A valid, non-empty Topic Name.
fn topic_name() -> impl Strategy<Value = MqttStr> {
    "[^\\x00+#]{1,10}".prop_map(|s| MqttStr::try_from(s).expect("valid topic"))
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|n| PacketId::new(n).expect("non-zero"))
}

fn reason_code() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode)
}

/// Where a property list sits; the test's own copy of MQTT 5 §2.2.2.2
/// Table 2-4, independent of the codec's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// Any combination of property values, allowed or not.
fn any_properties() -> impl Strategy<Value = Properties> {
    use prop::option::of;
    let a = (
        of(any::<bool>()),
        of(any::<u32>()),
        of(mqtt_str()),
        of(topic_name()),
        of(binary()),
        prop::collection::vec(1u32..=268_435_455, 0..3),
        of(any::<u32>()),
        of(mqtt_str()),
        of(any::<u16>()),
    );
    let b = (
        of(mqtt_str()),
        of(binary()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<bool>()),
        of(mqtt_str()),
        of(mqtt_str()),
        of(mqtt_str()),
        of(any::<NonZeroU16>()),
    );
    let c = (
        of(any::<u16>()),
        of(any::<NonZeroU16>()),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        of(any::<bool>()),
        prop::collection::vec((mqtt_str(), mqtt_str()), 0..3),
        of(any::<NonZeroU32>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    );
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: b.0,
        authentication_data: b.1,
        request_problem_information: b.2,
        will_delay_interval: b.3,
        request_response_information: b.4,
        response_information: b.5,
        server_reference: b.6,
        reason_string: b.7,
        receive_maximum: b.8,
        topic_alias_maximum: c.0,
        topic_alias: c.1,
        maximum_qos: c.2,
        retain_available: c.3,
        user_properties: c.4,
        maximum_packet_size: c.5,
        wildcard_subscription_available: c.6,
        subscription_identifiers_available: c.7,
        shared_subscription_available: c.8,
    })
}

/// Keeps only the properties `owner` may carry, so the result is valid.
fn restrict(p: Properties, owner: Owner) -> Properties {
    use Owner::*;
    let publish_or_will = matches!(owner, Publish | Will);
    let connect_or_connack = matches!(owner, Connect | ConnAck);
    let auth_capable = matches!(owner, Connect | ConnAck | Auth);
    let with_reason = matches!(owner, ConnAck | Ack | SubAck | UnsubAck | Disconnect | Auth);
    fn keep<T>(v: Option<T>, allowed: bool) -> Option<T> {
        v.filter(|_| allowed)
    }
    let authentication_method = keep(p.authentication_method, auth_capable);
    Properties {
        payload_format_indicator: keep(p.payload_format_indicator, publish_or_will),
        message_expiry_interval: keep(p.message_expiry_interval, publish_or_will),
        content_type: keep(p.content_type, publish_or_will),
        response_topic: keep(p.response_topic, publish_or_will),
        correlation_data: keep(p.correlation_data, publish_or_will),
        subscription_identifiers: match owner {
            Publish => p.subscription_identifiers,
            Subscribe => p.subscription_identifiers.into_iter().take(1).collect(),
            _ => Vec::new(),
        },
        session_expiry_interval: keep(
            p.session_expiry_interval,
            matches!(owner, Connect | ConnAck | Disconnect),
        ),
        assigned_client_identifier: keep(p.assigned_client_identifier, owner == ConnAck),
        server_keep_alive: keep(p.server_keep_alive, owner == ConnAck),
        // Authentication Data needs a Method (MQTT 5 §3.1.2.11.10).
        authentication_data: keep(
            p.authentication_data,
            auth_capable && authentication_method.is_some(),
        ),
        authentication_method,
        request_problem_information: keep(p.request_problem_information, owner == Connect),
        will_delay_interval: keep(p.will_delay_interval, owner == Will),
        request_response_information: keep(p.request_response_information, owner == Connect),
        response_information: keep(p.response_information, owner == ConnAck),
        server_reference: keep(p.server_reference, matches!(owner, ConnAck | Disconnect)),
        reason_string: keep(p.reason_string, with_reason),
        receive_maximum: keep(p.receive_maximum, connect_or_connack),
        topic_alias_maximum: keep(p.topic_alias_maximum, connect_or_connack),
        topic_alias: keep(p.topic_alias, owner == Publish),
        maximum_qos: keep(p.maximum_qos, owner == ConnAck),
        retain_available: keep(p.retain_available, owner == ConnAck),
        user_properties: p.user_properties,
        maximum_packet_size: keep(p.maximum_packet_size, connect_or_connack),
        wildcard_subscription_available: keep(p.wildcard_subscription_available, owner == ConnAck),
        subscription_identifiers_available: keep(
            p.subscription_identifiers_available,
            owner == ConnAck,
        ),
        shared_subscription_available: keep(p.shared_subscription_available, owner == ConnAck),
    }
}

fn properties(owner: Owner) -> impl Strategy<Value = Properties> {
    prop_oneof![
        // Often none at all: the common case on the wire.
        Just(Properties::default()),
        any_properties().prop_map(move |p| restrict(p, owner)),
    ]
}

fn will() -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(Owner::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect() -> impl Strategy<Value = Packet> {
    (
        prop_oneof![Just(V311), Just(V5)],
        any::<bool>(),
        any::<u16>(),
        properties(Owner::Connect),
        mqtt_str(),
        prop::option::of(will()),
        prop::option::of(mqtt_str()),
        prop::option::of(binary()),
    )
        .prop_map(
            |(
                protocol_version,
                clean_start,
                keep_alive,
                properties,
                client_id,
                will,
                username,
                password,
            )| {
                let mut c = Connect {
                    protocol_version,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                };
                if protocol_version == V311 {
                    // 3.1.1 has no properties and needs a user name for a password.
                    c.properties = Properties::default();
                    if let Some(w) = &mut c.will {
                        w.properties = Properties::default();
                    }
                    if c.password.is_some() && c.username.is_none() {
                        c.username = Some(MqttStr::from_static("user"));
                    }
                }
                c.into()
            },
        )
}

fn publish() -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![4 => topic_name(), 1 => Just(MqttStr::default())],
        packet_id(),
        properties(Owner::Publish),
        binary(),
    )
        .prop_map(|(qos, dup, retain, topic, id, mut properties, payload)| {
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = NonZeroU16::new(1);
            }
            let at_least_once = qos != QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && at_least_once,
                qos,
                retain,
                topic,
                packet_id: at_least_once.then_some(id),
                properties,
                payload,
            })
        })
}

fn ack() -> impl Strategy<Value = Ack> {
    (
        packet_id(),
        prop_oneof![Just(ReasonCode::SUCCESS), reason_code()],
        properties(Owner::Ack),
    )
        .prop_map(|(packet_id, reason_code, properties)| Ack {
            packet_id,
            reason_code,
            properties,
        })
}

fn subscription_options() -> impl Strategy<Value = SubscriptionOptions> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendAtSubscribeIfNew),
            Just(RetainHandling::DoNotSend)
        ],
    )
        .prop_map(|(qos, no_local, retain_as_published, retain_handling)| {
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            }
        })
}

fn subscribe() -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        properties(Owner::Subscribe),
        prop::collection::vec(
            (mqtt_str(), subscription_options()).prop_map(|(topic_filter, options)| Subscription {
                topic_filter,
                options,
            }),
            1..4,
        ),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn any_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        connect(),
        (any::<bool>(), reason_code(), properties(Owner::ConnAck)).prop_map(
            |(session_present, reason_code, properties)| Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        ),
        publish(),
        ack().prop_map(Packet::PubAck),
        ack().prop_map(Packet::PubRec),
        ack().prop_map(Packet::PubRel),
        ack().prop_map(Packet::PubComp),
        subscribe(),
        (
            packet_id(),
            properties(Owner::SubAck),
            prop::collection::vec(reason_code(), 0..4)
        )
            .prop_map(
                |(packet_id, properties, reason_codes)| Packet::SubAck(SubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            ),
        (
            packet_id(),
            properties(Owner::Unsubscribe),
            prop::collection::vec(mqtt_str(), 1..4)
        )
            .prop_map(
                |(packet_id, properties, topic_filters)| Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    properties,
                    topic_filters,
                })
            ),
        (
            packet_id(),
            properties(Owner::UnsubAck),
            prop::collection::vec(reason_code(), 0..4)
        )
            .prop_map(
                |(packet_id, properties, reason_codes)| Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    reason_codes,
                })
            ),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        (reason_code(), properties(Owner::Disconnect)).prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        }),
        (reason_code(), properties(Owner::Auth)).prop_map(|(reason_code, properties)| {
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        }),
    ]
}

/// What decoding `packet` gives after encoding it for `version`, or `None`
/// if it cannot be encoded for that version at all.
fn expected(packet: &Packet, version: ProtocolVersion) -> Option<Packet> {
    match (packet, version) {
        // A CONNECT is encoded in its own version.
        (Packet::Connect(c), _) => {
            let mut c = c.clone();
            if c.protocol_version == V311 {
                if c.password.is_some() && c.username.is_none() {
                    return None;
                }
                c.properties = Properties::default();
                if let Some(w) = &mut c.will {
                    w.properties = Properties::default();
                }
            }
            Some(Packet::Connect(c))
        }
        (_, V5) => Some(packet.clone()),
        (_, V311) => as_v311(packet),
    }
}

/// A non-CONNECT packet as MQTT 3.1.1 can carry it, or `None` if it cannot
/// be encoded for 3.1.1 at all.
fn as_v311(packet: &Packet) -> Option<Packet> {
    let none = Properties::default;
    Some(match packet.clone() {
        Packet::Connect(c) => return expected(&Packet::Connect(c), V311),
        Packet::ConnAck(c) => {
            let code = c.reason_code.to_v311_connack()?;
            Packet::ConnAck(ConnAck {
                session_present: c.session_present,
                reason_code: ReasonCode::from_v311_connack(code)?,
                properties: none(),
            })
        }
        Packet::Publish(p) => {
            if p.topic.is_empty() {
                return None;
            }
            Packet::Publish(Publish {
                properties: none(),
                ..p
            })
        }
        Packet::PubAck(a) => Packet::PubAck(Ack::new(a.packet_id)),
        Packet::PubRec(a) => Packet::PubRec(Ack::new(a.packet_id)),
        Packet::PubRel(a) => Packet::PubRel(Ack::new(a.packet_id)),
        Packet::PubComp(a) => Packet::PubComp(Ack::new(a.packet_id)),
        Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            packet_id: s.packet_id,
            properties: none(),
            subscriptions: s
                .subscriptions
                .into_iter()
                .map(|s| Subscription {
                    topic_filter: s.topic_filter,
                    options: SubscriptionOptions::new(s.options.qos),
                })
                .collect(),
        }),
        Packet::SubAck(s) => {
            let codes = s
                .reason_codes
                .iter()
                .map(|c| match c.0 {
                    0..=2 => Some(*c),
                    0x80.. => Some(ReasonCode::UNSPECIFIED_ERROR),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: none(),
                reason_codes: codes,
            })
        }
        Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
            properties: none(),
            ..u
        }),
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: none(),
            reason_codes: Vec::new(),
        }),
        Packet::PingReq => Packet::PingReq,
        Packet::PingResp => Packet::PingResp,
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::default()),
        Packet::Auth(_) => return None,
    })
}

fn encode_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("valid packet encodes");
    out.to_vec()
}

fn versioned_packet() -> impl Strategy<Value = (Packet, ProtocolVersion)> {
    (any_packet(), prop_oneof![Just(V311), Just(V5)])
        .prop_filter("representable in the version", |(p, v)| {
            expected(p, *v).is_some()
        })
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v5_roundtrip(packet in any_packet()) {
        let wire = encode_vec(&packet, V5);
        prop_assert_eq!(encoded_len(&packet, V5), Ok(wire.len()));
        let mut buf = BytesMut::from(&wire[..]);
        let decoded = decode(&mut buf, V5, usize::MAX).expect("decodes").expect("complete");
        prop_assert_eq!(decoded, packet);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn v311_roundtrip_drops_exactly_the_v5_parts(packet in any_packet()) {
        let mut out = BytesMut::new();
        let result = encode(&packet, V311, &mut out);
        match expected(&packet, V311) {
            None => {
                // Not representable: encode refuses and writes nothing.
                prop_assert!(result.is_err(), "{:?} should not encode", packet);
                prop_assert!(out.is_empty());
            }
            Some(expected) => {
                prop_assert_eq!(result, Ok(()));
                prop_assert_eq!(encoded_len(&packet, V311), Ok(out.len()));
                let decoded = decode(&mut out, V311, usize::MAX).expect("decodes").expect("complete");
                prop_assert_eq!(decoded, expected);
                prop_assert!(out.is_empty());
            }
        }
    }

    /// Whatever the encoder accepts, the decoder gives back: even packets
    /// built with properties they may not carry are either refused by the
    /// encoder or survive the trip unchanged.
    #[test]
    fn encode_accepts_only_what_decode_accepts(
        packet in any_packet(),
        props in any_properties(),
        version in prop_oneof![Just(V311), Just(V5)],
    ) {
        let mut packet = packet;
        match &mut packet {
            Packet::Connect(c) => c.properties = props,
            Packet::ConnAck(c) => c.properties = props,
            Packet::Publish(p) => p.properties = props,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => a.properties = props,
            Packet::Subscribe(s) => s.properties = props,
            Packet::SubAck(s) => s.properties = props,
            Packet::Unsubscribe(u) => u.properties = props,
            Packet::UnsubAck(u) => u.properties = props,
            Packet::Disconnect(d) => d.properties = props,
            Packet::Auth(a) => a.properties = props,
            Packet::PingReq | Packet::PingResp => {}
        }
        let mut out = BytesMut::new();
        if encode(&packet, version, &mut out).is_ok() {
            let decoded = decode(&mut out, version, usize::MAX).expect("decodes").expect("complete");
            prop_assert_eq!(Some(decoded), expected(&packet, version));
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        common::decode_roundtrip_check(&data);
    }

    /// Random bytes rarely get past the fixed header; mutating valid
    /// packets reaches the deep parsing paths.
    #[test]
    fn mutated_packets_never_panic(
        (packet, version) in versioned_packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = encode_vec(&packet, version);
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        common::decode_roundtrip_check(&wire);
        common::decode_roundtrip_check(&wire[..cut.index(wire.len() + 1)]);
    }

    /// Every possible first byte in front of a valid body: covers each
    /// packet type's fixed-header flag rules (DUP, QoS, reserved flags).
    #[test]
    fn every_first_byte_is_handled((packet, version) in versioned_packet()) {
        let mut wire = encode_vec(&packet, version);
        for first in 0..=u8::MAX {
            wire[0] = first;
            common::decode_roundtrip_check(&wire);
        }
    }

    /// Every single-bit flip of a valid packet: reaches each flag byte
    /// (Connect Flags, Subscription Options, property values, lengths).
    #[test]
    fn every_bit_flip_is_handled((packet, version) in versioned_packet()) {
        let wire = encode_vec(&packet, version);
        for i in 0..wire.len() {
            for bit in 0..8 {
                let mut flipped = wire.clone();
                flipped[i] ^= 1 << bit;
                common::decode_roundtrip_check(&flipped);
            }
        }
    }

    #[test]
    fn every_prefix_is_incomplete((packet, version) in versioned_packet()) {
        let wire = encode_vec(&packet, version);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(None), "cut at {}", cut);
            prop_assert_eq!(&buf[..], &wire[..cut], "an incomplete frame was consumed");
        }
    }

    #[test]
    fn byte_by_byte_equals_whole((packet, version) in versioned_packet()) {
        let wire = encode_vec(&packet, version);
        let whole = decode(&mut BytesMut::from(&wire[..]), version, usize::MAX);
        let mut buf = BytesMut::new();
        let mut decoded = None;
        for (i, &byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            match decode(&mut buf, version, usize::MAX).expect("no error") {
                Some(p) => {
                    prop_assert_eq!(i, wire.len() - 1, "decoded before the last byte");
                    decoded = Some(p);
                }
                None => prop_assert!(i < wire.len() - 1, "last byte did not complete it"),
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(Ok(decoded), whole);
    }

    #[test]
    fn back_to_back_packets_decode_in_order(
        (first, version) in versioned_packet(),
        second in any_packet(),
    ) {
        let second = expected(&second, version).unwrap_or(Packet::PingReq);
        let mut buf = BytesMut::from(&encode_vec(&first, version)[..]);
        buf.extend_from_slice(&encode_vec(&second, version));
        let a = decode(&mut buf, version, usize::MAX).expect("first decodes");
        prop_assert_eq!(a, expected(&first, version));
        let b = decode(&mut buf, version, usize::MAX).expect("second decodes");
        // `second` is already in its decoded form.
        prop_assert_eq!(b, Some(second));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(None));
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header(
        (packet, version) in versioned_packet(),
    ) {
        let wire = encode_vec(&packet, version);
        let max = wire.len() - 1;
        // Only the fixed header is needed to refuse it.
        let header_len = 1 + wire[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
        let mut buf = BytesMut::from(&wire[..header_len]);
        let err = decode(&mut buf, version, max).expect_err("too large");
        prop_assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        let mut whole = BytesMut::from(&wire[..]);
        prop_assert!(decode(&mut whole, version, wire.len()).expect("fits").is_some());
    }
}

//! MQTT 5 properties (MQTT 5 §2.2.2).
//!
//! One [`Properties`] struct with a typed field per property serves every
//! packet; which fields a packet may carry is checked against the table of
//! MQTT 5 §2.2.2.2 on both decode and encode. MQTT 3.1.1 has no properties:
//! they are never read in 3.1.1 and are dropped when encoding for it.

use std::convert::Infallible;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::topic::validate_topic_name_bytes;
use super::types::{
    MqttStr, QoS, Reader, VARINT_MAX, binary_len, put_binary, put_str, put_varint, str_len,
    varint_len,
};

/// Property identifiers (MQTT 5 §2.2.2.2, Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PropertyId {
    /// 0x01, Byte: PUBLISH, Will.
    PayloadFormatIndicator = 0x01,
    /// 0x02, Four Byte Integer: PUBLISH, Will.
    MessageExpiryInterval = 0x02,
    /// 0x03, UTF-8 String: PUBLISH, Will.
    ContentType = 0x03,
    /// 0x08, UTF-8 String: PUBLISH, Will.
    ResponseTopic = 0x08,
    /// 0x09, Binary Data: PUBLISH, Will.
    CorrelationData = 0x09,
    /// 0x0B, Variable Byte Integer: PUBLISH, SUBSCRIBE.
    SubscriptionIdentifier = 0x0B,
    /// 0x11, Four Byte Integer: CONNECT, CONNACK, DISCONNECT.
    SessionExpiryInterval = 0x11,
    /// 0x12, UTF-8 String: CONNACK.
    AssignedClientIdentifier = 0x12,
    /// 0x13, Two Byte Integer: CONNACK.
    ServerKeepAlive = 0x13,
    /// 0x15, UTF-8 String: CONNECT, CONNACK, AUTH.
    AuthenticationMethod = 0x15,
    /// 0x16, Binary Data: CONNECT, CONNACK, AUTH.
    AuthenticationData = 0x16,
    /// 0x17, Byte: CONNECT.
    RequestProblemInformation = 0x17,
    /// 0x18, Four Byte Integer: Will.
    WillDelayInterval = 0x18,
    /// 0x19, Byte: CONNECT.
    RequestResponseInformation = 0x19,
    /// 0x1A, UTF-8 String: CONNACK.
    ResponseInformation = 0x1A,
    /// 0x1C, UTF-8 String: CONNACK, DISCONNECT.
    ServerReference = 0x1C,
    /// 0x1F, UTF-8 String: CONNACK, acks, SUBACK, UNSUBACK, DISCONNECT, AUTH.
    ReasonString = 0x1F,
    /// 0x21, Two Byte Integer: CONNECT, CONNACK.
    ReceiveMaximum = 0x21,
    /// 0x22, Two Byte Integer: CONNECT, CONNACK.
    TopicAliasMaximum = 0x22,
    /// 0x23, Two Byte Integer: PUBLISH.
    TopicAlias = 0x23,
    /// 0x24, Byte: CONNACK.
    MaximumQoS = 0x24,
    /// 0x25, Byte: CONNACK.
    RetainAvailable = 0x25,
    /// 0x26, UTF-8 String Pair: every packet with properties, and Will.
    UserProperty = 0x26,
    /// 0x27, Four Byte Integer: CONNECT, CONNACK.
    MaximumPacketSize = 0x27,
    /// 0x28, Byte: CONNACK.
    WildcardSubscriptionAvailable = 0x28,
    /// 0x29, Byte: CONNACK.
    SubscriptionIdentifierAvailable = 0x29,
    /// 0x2A, Byte: CONNACK.
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    fn from_u32(id: u32) -> Option<Self> {
        use PropertyId::*;
        Some(match id {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// Whether the property may appear in `owner` (MQTT 5 §2.2.2.2, Table 2-4).
    fn allowed_in(self, owner: PropertyOwner) -> bool {
        use PropertyId::*;
        use PropertyOwner as O;
        match self {
            PayloadFormatIndicator
            | MessageExpiryInterval
            | ContentType
            | ResponseTopic
            | CorrelationData => matches!(owner, O::Publish | O::Will),
            SubscriptionIdentifier => matches!(owner, O::Publish | O::Subscribe),
            SessionExpiryInterval => matches!(owner, O::Connect | O::ConnAck | O::Disconnect),
            AssignedClientIdentifier
            | ServerKeepAlive
            | ResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => owner == O::ConnAck,
            AuthenticationMethod | AuthenticationData => {
                matches!(owner, O::Connect | O::ConnAck | O::Auth)
            }
            RequestProblemInformation | RequestResponseInformation => owner == O::Connect,
            WillDelayInterval => owner == O::Will,
            ServerReference => matches!(owner, O::ConnAck | O::Disconnect),
            ReasonString => matches!(
                owner,
                O::ConnAck
                    | O::PubAck
                    | O::PubRec
                    | O::PubRel
                    | O::PubComp
                    | O::SubAck
                    | O::UnsubAck
                    | O::Disconnect
                    | O::Auth
            ),
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => {
                matches!(owner, O::Connect | O::ConnAck)
            }
            TopicAlias => owner == O::Publish,
            UserProperty => true,
        }
    }
}

/// Where a property list sits: a packet's variable header, or the Will
/// Properties in the CONNECT payload (MQTT 5 §3.1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyOwner {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyOwner {
    fn name(self) -> &'static str {
        use PropertyOwner::*;
        match self {
            Connect => "CONNECT",
            Will => "Will Properties",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// MQTT 5 properties. Every field is optional (or an empty `Vec`); a
/// default `Properties` is "no properties" and encodes as a single zero
/// Property Length byte.
///
/// Fields a packet type may not carry are rejected on decode (Malformed
/// Packet, MQTT 5 §2.2.2.2) and on encode. Values the spec forbids are
/// ruled out by the field types where possible (`NonZero*`, `bool` for the
/// 0/1 bytes), and otherwise checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: `true` when the payload is UTF-8 (value 1), `false` for
    /// unspecified bytes (value 0) (MQTT 5 §3.3.2.3.2).
    pub payload_format_indicator: Option<bool>,
    /// 0x02: message lifetime in seconds (MQTT 5 §3.3.2.3.3).
    pub message_expiry_interval: Option<u32>,
    /// 0x03: MIME-ish content type of the payload (MQTT 5 §3.3.2.3.9).
    pub content_type: Option<MqttStr>,
    /// 0x08: topic for a response; must be a valid Topic Name
    /// [MQTT-3.3.2-14] (MQTT 5 §3.3.2.3.5).
    pub response_topic: Option<MqttStr>,
    /// 0x09: request/response correlation (MQTT 5 §3.3.2.3.6).
    pub correlation_data: Option<Bytes>,
    /// 0x0B: Subscription Identifiers, each 1..=268,435,455. SUBSCRIBE may
    /// carry one; a server→client PUBLISH one per matching subscription
    /// (MQTT 5 §3.3.2.3.8, §3.8.2.1.2).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: session lifetime in seconds after disconnect (MQTT 5 §3.1.2.11.2).
    pub session_expiry_interval: Option<u32>,
    /// 0x12: client id the server assigned (MQTT 5 §3.2.2.3.7).
    pub assigned_client_identifier: Option<MqttStr>,
    /// 0x13: keep alive the server imposes (MQTT 5 §3.2.2.3.14).
    pub server_keep_alive: Option<u16>,
    /// 0x15: extended authentication method (MQTT 5 §3.1.2.11.9).
    pub authentication_method: Option<MqttStr>,
    /// 0x16: extended authentication data; requires a method
    /// (MQTT 5 §3.1.2.11.10).
    pub authentication_data: Option<Bytes>,
    /// 0x17: whether the client wants Reason Strings / User Properties on
    /// failures (MQTT 5 §3.1.2.11.7).
    pub request_problem_information: Option<bool>,
    /// 0x18: seconds to delay the Will Message (MQTT 5 §3.1.3.2.2).
    pub will_delay_interval: Option<u32>,
    /// 0x19: whether the client wants Response Information
    /// (MQTT 5 §3.1.2.11.6).
    pub request_response_information: Option<bool>,
    /// 0x1A: basis for response topics (MQTT 5 §3.2.2.3.15).
    pub response_information: Option<MqttStr>,
    /// 0x1C: another server to use (MQTT 5 §3.2.2.3.16).
    pub server_reference: Option<MqttStr>,
    /// 0x1F: human-readable diagnostic (MQTT 5 §3.2.2.3.9).
    pub reason_string: Option<MqttStr>,
    /// 0x21: in-flight QoS 1/2 PUBLISH limit; 0 is a Protocol Error
    /// (MQTT 5 §3.1.2.11.3).
    pub receive_maximum: Option<NonZeroU16>,
    /// 0x22: highest Topic Alias accepted; 0 means none (MQTT 5 §3.1.2.11.5).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23: Topic Alias; 0 is not permitted (MQTT 5 §3.3.2.3.4).
    pub topic_alias: Option<NonZeroU16>,
    /// 0x24: highest QoS the server supports; only 0 or 1 may be sent,
    /// absence means 2 (MQTT 5 §3.2.2.3.4).
    pub maximum_qos: Option<QoS>,
    /// 0x25: whether retained messages are supported (MQTT 5 §3.2.2.3.5).
    pub retain_available: Option<bool>,
    /// 0x26: User Properties, in order; a name may repeat (MQTT 5 §3.3.2.3.7).
    pub user_properties: Vec<(MqttStr, MqttStr)>,
    /// 0x27: largest packet the sender accepts; 0 is a Protocol Error
    /// (MQTT 5 §3.1.2.11.4).
    pub maximum_packet_size: Option<NonZeroU32>,
    /// 0x28: whether wildcard subscriptions are supported (MQTT 5 §3.2.2.3.11).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29: whether Subscription Identifiers are supported (MQTT 5 §3.2.2.3.12).
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A: whether shared subscriptions are supported (MQTT 5 §3.2.2.3.13).
    pub shared_subscription_available: Option<bool>,
}

/// A property value by wire data type (MQTT 5 §1.5), for encoding.
enum Value<'a> {
    Byte(u8),
    TwoByte(u16),
    FourByte(u32),
    VarInt(u32),
    Str(&'a MqttStr),
    Binary(&'a [u8]),
    Pair(&'a MqttStr, &'a MqttStr),
}

impl Value<'_> {
    /// Wire length of the value (identifier excluded).
    fn wire_len(&self) -> Result<usize, EncodeError> {
        Ok(match self {
            Value::Byte(_) => 1,
            Value::TwoByte(_) => 2,
            Value::FourByte(_) => 4,
            Value::VarInt(v) => varint_len(*v as usize),
            Value::Str(s) => str_len(s),
            Value::Binary(b) => binary_len(b)?,
            Value::Pair(k, v) => str_len(k) + str_len(v),
        })
    }

    fn write(&self, out: &mut BytesMut) {
        match self {
            Value::Byte(v) => out.put_u8(*v),
            Value::TwoByte(v) => out.put_u16(*v),
            Value::FourByte(v) => out.put_u32(*v),
            Value::VarInt(v) => put_varint(out, *v as usize),
            Value::Str(s) => put_str(out, s),
            Value::Binary(b) => put_binary(out, b),
            Value::Pair(k, v) => {
                put_str(out, k);
                put_str(out, v);
            }
        }
    }
}

impl Properties {
    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        self.try_for_each(|_, _| Err(())).is_ok()
    }

    /// Visits every set property in identifier order, the order they are
    /// encoded in. The single place that knows each field's id and type.
    fn try_for_each<E>(
        &self,
        mut f: impl FnMut(PropertyId, Value<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        use PropertyId as P;
        if let Some(v) = self.payload_format_indicator {
            f(P::PayloadFormatIndicator, Value::Byte(v.into()))?;
        }
        if let Some(v) = self.message_expiry_interval {
            f(P::MessageExpiryInterval, Value::FourByte(v))?;
        }
        if let Some(v) = &self.content_type {
            f(P::ContentType, Value::Str(v))?;
        }
        if let Some(v) = &self.response_topic {
            f(P::ResponseTopic, Value::Str(v))?;
        }
        if let Some(v) = &self.correlation_data {
            f(P::CorrelationData, Value::Binary(v))?;
        }
        for &v in &self.subscription_identifiers {
            f(P::SubscriptionIdentifier, Value::VarInt(v))?;
        }
        if let Some(v) = self.session_expiry_interval {
            f(P::SessionExpiryInterval, Value::FourByte(v))?;
        }
        if let Some(v) = &self.assigned_client_identifier {
            f(P::AssignedClientIdentifier, Value::Str(v))?;
        }
        if let Some(v) = self.server_keep_alive {
            f(P::ServerKeepAlive, Value::TwoByte(v))?;
        }
        if let Some(v) = &self.authentication_method {
            f(P::AuthenticationMethod, Value::Str(v))?;
        }
        if let Some(v) = &self.authentication_data {
            f(P::AuthenticationData, Value::Binary(v))?;
        }
        if let Some(v) = self.request_problem_information {
            f(P::RequestProblemInformation, Value::Byte(v.into()))?;
        }
        if let Some(v) = self.will_delay_interval {
            f(P::WillDelayInterval, Value::FourByte(v))?;
        }
        if let Some(v) = self.request_response_information {
            f(P::RequestResponseInformation, Value::Byte(v.into()))?;
        }
        if let Some(v) = &self.response_information {
            f(P::ResponseInformation, Value::Str(v))?;
        }
        if let Some(v) = &self.server_reference {
            f(P::ServerReference, Value::Str(v))?;
        }
        if let Some(v) = &self.reason_string {
            f(P::ReasonString, Value::Str(v))?;
        }
        if let Some(v) = self.receive_maximum {
            f(P::ReceiveMaximum, Value::TwoByte(v.get()))?;
        }
        if let Some(v) = self.topic_alias_maximum {
            f(P::TopicAliasMaximum, Value::TwoByte(v))?;
        }
        if let Some(v) = self.topic_alias {
            f(P::TopicAlias, Value::TwoByte(v.get()))?;
        }
        if let Some(v) = self.maximum_qos {
            f(P::MaximumQoS, Value::Byte(v.as_u8()))?;
        }
        if let Some(v) = self.retain_available {
            f(P::RetainAvailable, Value::Byte(v.into()))?;
        }
        for (k, v) in &self.user_properties {
            f(P::UserProperty, Value::Pair(k, v))?;
        }
        if let Some(v) = self.maximum_packet_size {
            f(P::MaximumPacketSize, Value::FourByte(v.get()))?;
        }
        if let Some(v) = self.wildcard_subscription_available {
            f(P::WildcardSubscriptionAvailable, Value::Byte(v.into()))?;
        }
        if let Some(v) = self.subscription_identifiers_available {
            f(P::SubscriptionIdentifierAvailable, Value::Byte(v.into()))?;
        }
        if let Some(v) = self.shared_subscription_available {
            f(P::SharedSubscriptionAvailable, Value::Byte(v.into()))?;
        }
        Ok(())
    }

    /// Validates the properties for `owner` and returns their wire length:
    /// the Property Length varint plus the properties.
    pub(crate) fn encoded_len(&self, owner: PropertyOwner) -> Result<usize, EncodeError> {
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(EncodeError::AuthDataWithoutMethod);
        }
        if owner != PropertyOwner::Publish && self.subscription_identifiers.len() > 1 {
            return Err(EncodeError::InvalidPropertyValue(
                PropertyId::SubscriptionIdentifier,
            ));
        }
        let mut len: usize = 0;
        self.try_for_each(|id, value| {
            if !id.allowed_in(owner) {
                return Err(EncodeError::PropertyNotAllowed {
                    property: id,
                    packet: owner.name(),
                });
            }
            let valid = match (id, &value) {
                (PropertyId::SubscriptionIdentifier, Value::VarInt(v)) => {
                    (1..=VARINT_MAX).contains(v)
                }
                (PropertyId::MaximumQoS, Value::Byte(v)) => *v <= 1,
                (PropertyId::ResponseTopic, Value::Str(s)) => {
                    validate_topic_name_bytes(s.as_bytes()).is_ok()
                }
                _ => true,
            };
            if !valid {
                return Err(EncodeError::InvalidPropertyValue(id));
            }
            // Every identifier fits in a one-byte varint (MQTT 5 §2.2.2.2).
            len = len.saturating_add(1 + value.wire_len()?);
            Ok(())
        })?;
        Ok(varint_len(len).saturating_add(len))
    }

    /// Writes Property Length and properties. Only called after
    /// [`encoded_len`](Self::encoded_len) accepted them.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        let mut len = 0;
        let _ = self.try_for_each::<Infallible>(|_, value| {
            len += 1 + value.wire_len().unwrap_or(0);
            Ok(())
        });
        put_varint(out, len);
        let _ = self.try_for_each::<Infallible>(|id, value| {
            out.put_u8(id as u8);
            value.write(out);
            Ok(())
        });
    }

    /// Reads a Property Length and the properties it covers, checking each
    /// against `owner`.
    pub(crate) fn decode(r: &mut Reader, owner: PropertyOwner) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        let mut props = Properties::default();
        if len == 0 {
            return Ok(props);
        }
        // A Property Length running past the packet is malformed.
        let mut r = Reader::new(r.take(len)?);
        while !r.is_empty() {
            let raw = r.varint()?;
            let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty(raw))?;
            if !id.allowed_in(owner) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    packet: owner.name(),
                });
            }
            props.read_one(id, &mut r, owner)?;
        }
        // MQTT 5 §3.1.2.11.10: "It is a Protocol Error to include
        // Authentication Data if there is no Authentication Method."
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(props)
    }

    /// Reads the value of property `id` into its field.
    fn read_one(
        &mut self,
        id: PropertyId,
        r: &mut Reader,
        owner: PropertyOwner,
    ) -> Result<(), DecodeError> {
        use PropertyId as P;
        match id {
            P::PayloadFormatIndicator => set(&mut self.payload_format_indicator, id, flag(r, id)?),
            P::MessageExpiryInterval => set(&mut self.message_expiry_interval, id, r.u32()?),
            P::ContentType => set(&mut self.content_type, id, r.string()?),
            P::ResponseTopic => {
                let topic = r.string()?;
                // [MQTT-3.3.2-14]: a Topic Name, so no wildcards.
                validate_topic_name_bytes(topic.as_bytes())
                    .map_err(|_| DecodeError::InvalidPropertyValue(id))?;
                set(&mut self.response_topic, id, topic)
            }
            P::CorrelationData => set(&mut self.correlation_data, id, r.binary()?),
            P::SubscriptionIdentifier => {
                // "It is a Protocol Error if the Subscription Identifier has
                // a value of 0" (MQTT 5 §3.8.2.1.2); SUBSCRIBE may carry one,
                // a PUBLISH several (§3.3.2.3.8).
                let v = r.varint()?;
                if v == 0 {
                    return Err(DecodeError::InvalidPropertyValue(id));
                }
                if owner != PropertyOwner::Publish && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(id));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            P::SessionExpiryInterval => set(&mut self.session_expiry_interval, id, r.u32()?),
            P::AssignedClientIdentifier => {
                set(&mut self.assigned_client_identifier, id, r.string()?)
            }
            P::ServerKeepAlive => set(&mut self.server_keep_alive, id, r.u16()?),
            P::AuthenticationMethod => set(&mut self.authentication_method, id, r.string()?),
            P::AuthenticationData => set(&mut self.authentication_data, id, r.binary()?),
            P::RequestProblemInformation => {
                set(&mut self.request_problem_information, id, flag(r, id)?)
            }
            P::WillDelayInterval => set(&mut self.will_delay_interval, id, r.u32()?),
            P::RequestResponseInformation => {
                set(&mut self.request_response_information, id, flag(r, id)?)
            }
            P::ResponseInformation => set(&mut self.response_information, id, r.string()?),
            P::ServerReference => set(&mut self.server_reference, id, r.string()?),
            P::ReasonString => set(&mut self.reason_string, id, r.string()?),
            P::ReceiveMaximum => {
                let v = NonZeroU16::new(r.u16()?).ok_or(DecodeError::InvalidPropertyValue(id))?;
                set(&mut self.receive_maximum, id, v)
            }
            P::TopicAliasMaximum => set(&mut self.topic_alias_maximum, id, r.u16()?),
            P::TopicAlias => {
                let v = NonZeroU16::new(r.u16()?).ok_or(DecodeError::InvalidPropertyValue(id))?;
                set(&mut self.topic_alias, id, v)
            }
            P::MaximumQoS => {
                // "It is a Protocol Error to include Maximum QoS more than
                // once, or to have a value other than 0 or 1" (§3.2.2.3.4).
                let qos = match r.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(DecodeError::InvalidPropertyValue(id)),
                };
                set(&mut self.maximum_qos, id, qos)
            }
            P::RetainAvailable => set(&mut self.retain_available, id, flag(r, id)?),
            P::UserProperty => {
                let name = r.string()?;
                let value = r.string()?;
                self.user_properties.push((name, value));
                Ok(())
            }
            P::MaximumPacketSize => {
                let v = NonZeroU32::new(r.u32()?).ok_or(DecodeError::InvalidPropertyValue(id))?;
                set(&mut self.maximum_packet_size, id, v)
            }
            P::WildcardSubscriptionAvailable => {
                set(&mut self.wildcard_subscription_available, id, flag(r, id)?)
            }
            P::SubscriptionIdentifierAvailable => set(
                &mut self.subscription_identifiers_available,
                id,
                flag(r, id)?,
            ),
            P::SharedSubscriptionAvailable => {
                set(&mut self.shared_subscription_available, id, flag(r, id)?)
            }
        }
    }
}

/// Stores a single-valued property; a second occurrence is a Protocol
/// Error (stated for each property in MQTT 5 §3).
fn set<T>(slot: &mut Option<T>, id: PropertyId, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

/// A Byte property that may only be 0 or 1 (e.g. MQTT 5 §3.1.2.11.7).
fn flag(r: &mut Reader, id: PropertyId) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PropertyOwner as O;

    fn decode(bytes: &[u8], owner: PropertyOwner) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let props = Properties::decode(&mut r, owner)?;
        r.finish()?;
        Ok(props)
    }

    fn encode(props: &Properties, owner: PropertyOwner) -> Result<BytesMut, EncodeError> {
        let len = props.encoded_len(owner)?;
        let mut out = BytesMut::new();
        props.write(&mut out);
        assert_eq!(out.len(), len);
        Ok(out)
    }

    #[test]
    fn empty_is_one_zero_byte() {
        let out = encode(&Properties::default(), O::Publish).unwrap();
        assert_eq!(&out[..], &[0x00]);
        assert_eq!(decode(&[0x00], O::Publish).unwrap(), Properties::default());
        assert!(Properties::default().is_empty());
    }

    #[test]
    fn publish_properties_wire_format() {
        let props = Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            topic_alias: NonZeroU16::new(3),
            subscription_identifiers: vec![1, 200],
            user_properties: vec![
                (MqttStr::from_static("k"), MqttStr::from_static("v")),
                (MqttStr::from_static("k"), MqttStr::from_static("w")),
            ],
            ..Properties::default()
        };
        assert!(!props.is_empty());
        #[rustfmt::skip]
        let wire: &[u8] = &[
            29,                         // Property Length
            0x01, 1,                    // Payload Format Indicator: UTF-8
            0x02, 0, 0, 0, 60,          // Message Expiry Interval: 60 s
            0x0B, 1,                    // Subscription Identifier 1
            0x0B, 0xC8, 0x01,           // Subscription Identifier 200 (varint)
            0x23, 0, 3,                 // Topic Alias 3
            0x26, 0, 1, b'k', 0, 1, b'v', // User Property k=v
            0x26, 0, 1, b'k', 0, 1, b'w', // User Property k=w (repeat allowed)
        ];
        assert_eq!(&encode(&props, O::Publish).unwrap()[..], wire);
        assert_eq!(decode(wire, O::Publish).unwrap(), props);
    }

    #[test]
    fn order_on_the_wire_does_not_matter() {
        // Topic Alias before Payload Format Indicator (MQTT 5 §2.2.2.2:
        // "There is no significance in the order of Properties").
        let p = decode(&[5, 0x23, 0, 9, 0x01, 0], O::Publish).unwrap();
        assert_eq!(p.topic_alias, NonZeroU16::new(9));
        assert_eq!(p.payload_format_indicator, Some(false));
    }

    #[test]
    fn duplicate_single_valued_property_is_protocol_error() {
        let err = decode(&[4, 0x01, 0, 0x01, 1], O::Publish).unwrap_err();
        assert_eq!(
            err,
            DecodeError::DuplicateProperty(PropertyId::PayloadFormatIndicator)
        );
        assert_eq!(err.reason_code().0, 0x82);
        // One Subscription Identifier per SUBSCRIBE (MQTT 5 §3.8.2.1.2).
        let err = decode(&[4, 0x0B, 1, 0x0B, 2], O::Subscribe).unwrap_err();
        assert_eq!(
            err,
            DecodeError::DuplicateProperty(PropertyId::SubscriptionIdentifier)
        );
    }

    #[test]
    fn property_not_allowed_in_packet_is_malformed() {
        // Topic Alias (0x23) in a CONNECT.
        let err = decode(&[3, 0x23, 0, 1], O::Connect).unwrap_err();
        assert_eq!(
            err,
            DecodeError::PropertyNotAllowed {
                property: PropertyId::TopicAlias,
                packet: "CONNECT"
            }
        );
        assert_eq!(err.reason_code().0, 0x81);
        // Will Delay Interval is for Will Properties, not PUBLISH.
        assert!(matches!(
            decode(&[5, 0x18, 0, 0, 0, 1], O::Publish),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
        assert!(decode(&[5, 0x18, 0, 0, 0, 1], O::Will).is_ok());
        let props = Properties {
            topic_alias: NonZeroU16::new(1),
            ..Properties::default()
        };
        assert_eq!(
            props.encoded_len(O::Connect),
            Err(EncodeError::PropertyNotAllowed {
                property: PropertyId::TopicAlias,
                packet: "CONNECT"
            })
        );
    }

    #[test]
    fn unknown_property_is_malformed() {
        let err = decode(&[2, 0x7F, 0], O::Publish).unwrap_err();
        assert_eq!(err, DecodeError::UnknownProperty(0x7F));
        assert_eq!(err.reason_code().0, 0x81);
    }

    #[test]
    fn property_length_overrun_is_malformed() {
        // Claims 10 bytes of properties, packet has 2.
        assert_eq!(
            decode(&[10, 0x01, 0], O::Publish),
            Err(DecodeError::UnexpectedEndOfPacket)
        );
        // Length covers half of a Four Byte Integer.
        assert_eq!(
            decode(&[3, 0x02, 0, 0, 0, 0], O::Publish),
            Err(DecodeError::UnexpectedEndOfPacket)
        );
    }

    #[test]
    fn forbidden_values_are_protocol_errors() {
        use PropertyId as P;
        let cases: &[(&[u8], PropertyOwner, PropertyId)] = &[
            (&[2, 0x01, 2], O::Publish, P::PayloadFormatIndicator),
            (&[2, 0x17, 2], O::Connect, P::RequestProblemInformation),
            (&[2, 0x19, 7], O::Connect, P::RequestResponseInformation),
            (&[3, 0x21, 0, 0], O::Connect, P::ReceiveMaximum),
            (&[5, 0x27, 0, 0, 0, 0], O::Connect, P::MaximumPacketSize),
            (&[3, 0x23, 0, 0], O::Publish, P::TopicAlias),
            (&[2, 0x24, 2], O::ConnAck, P::MaximumQoS),
            (&[2, 0x25, 2], O::ConnAck, P::RetainAvailable),
            (&[2, 0x0B, 0], O::Subscribe, P::SubscriptionIdentifier),
            (&[4, 0x08, 0, 1, b'#'], O::Publish, P::ResponseTopic),
        ];
        for &(wire, owner, id) in cases {
            let err = decode(wire, owner).unwrap_err();
            assert_eq!(err, DecodeError::InvalidPropertyValue(id), "{wire:?}");
            assert_eq!(err.reason_code().0, 0x82);
        }
    }

    #[test]
    fn auth_data_requires_method() {
        assert_eq!(
            decode(&[4, 0x16, 0, 1, 9], O::Auth),
            Err(DecodeError::AuthDataWithoutMethod)
        );
        let props = Properties {
            authentication_data: Some(Bytes::from_static(b"x")),
            ..Properties::default()
        };
        assert_eq!(
            props.encoded_len(O::Auth),
            Err(EncodeError::AuthDataWithoutMethod)
        );
    }

    #[test]
    fn encode_rejects_what_decode_rejects() {
        use PropertyId as P;
        let bad_sub_id = Properties {
            subscription_identifiers: vec![0],
            ..Properties::default()
        };
        assert_eq!(
            bad_sub_id.encoded_len(O::Publish),
            Err(EncodeError::InvalidPropertyValue(P::SubscriptionIdentifier))
        );
        let too_big = Properties {
            subscription_identifiers: vec![VARINT_MAX + 1],
            ..Properties::default()
        };
        assert!(too_big.encoded_len(O::Publish).is_err());
        let two = Properties {
            subscription_identifiers: vec![1, 2],
            ..Properties::default()
        };
        assert!(two.encoded_len(O::Publish).is_ok());
        assert_eq!(
            two.encoded_len(O::Subscribe),
            Err(EncodeError::InvalidPropertyValue(P::SubscriptionIdentifier))
        );
        let qos2 = Properties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..Properties::default()
        };
        assert_eq!(
            qos2.encoded_len(O::ConnAck),
            Err(EncodeError::InvalidPropertyValue(P::MaximumQoS))
        );
    }
}

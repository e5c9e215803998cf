//! What travels over a live stream: the client's operations and the
//! server's frames, all JSON text frames.

use base64::Engine;
use ferrule_core::Message;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A client's request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientOp {
    Subscribe { filters: Vec<String> },
    Unsubscribe { filters: Vec<String> },
}

/// The answer for one filter of a subscribe or unsubscribe.
#[derive(Debug, Serialize)]
pub struct FilterOutcome {
    pub filter: String,
    pub granted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FilterOutcome {
    pub fn granted(filter: String) -> Self {
        Self {
            filter,
            granted: true,
            reason: None,
        }
    }

    pub fn refused(filter: String, reason: String) -> Self {
        Self {
            filter,
            granted: false,
            reason: Some(reason),
        }
    }
}

/// A frame the server sends, other than messages.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Subscribed { filters: Vec<FilterOutcome> },
    Unsubscribed { filters: Vec<String> },
    Error { detail: String },
}

impl ServerFrame {
    pub fn to_text(&self) -> String {
        // Serializing these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a message is about, from its topic's shape (SPEC's topics).
pub fn kind_of(topic: &str) -> (&'static str, Option<&str>) {
    if topic == "$ferrule/alarms" {
        return ("alarm", None);
    }
    if let Some(rest) = topic.strip_prefix("$ferrule/devices/") {
        return match rest.split_once('/') {
            Some((device, "twin")) => ("twin", Some(device)),
            Some((device, "connectivity")) => ("connectivity", Some(device)),
            Some((device, "alarms")) => ("alarm", Some(device)),
            _ => ("message", None),
        };
    }
    let Some((device, rest)) = topic
        .strip_prefix("devices/")
        .and_then(|r| r.split_once('/'))
    else {
        return ("message", None);
    };
    let first = rest.split('/').next().unwrap_or_default();
    let kind = match (first, rest == first) {
        ("telemetry", true) => "telemetry",
        ("events", false) => "event",
        ("state", false) => "state",
        ("commands", false) => "command",
        _ => return ("message", Some(device)),
    };
    (kind, Some(device))
}

#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    frame: &'static str,
    topic: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    qos: u8,
    retain: bool,
    ts: i64,
}

/// A message as its JSON frame: the payload as JSON when it is JSON (kept
/// as sent, not re-encoded), else as a string when it is UTF-8, else in
/// base64. `retain` is set for retained messages sent on subscribing, as
/// MQTT does.
pub fn message_frame(message: &Message, retain: bool) -> String {
    let (kind, device) = kind_of(&message.topic);
    let (payload, payload_base64) = match std::str::from_utf8(&message.payload) {
        Ok(text) => match serde_json::from_str::<&RawValue>(text) {
            Ok(json) => (Some(Payload::Json(json)), None),
            Err(_) => (Some(Payload::Text(text)), None),
        },
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&message.payload)),
        ),
    };
    let frame = MessageFrame {
        frame: "message",
        topic: &message.topic,
        kind,
        device,
        payload,
        payload_base64,
        qos: message.qos.as_u8(),
        retain,
        ts: message.received_at_ms,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrule_core::{Origin, QoS, TenantId};
    use serde_json::{Value, json};

    fn frame(topic: &str, payload: &'static [u8]) -> Value {
        let m = Message::new(
            TenantId::new("t").unwrap(),
            topic.into(),
            Bytes::from_static(payload),
            QoS::AtLeastOnce,
            Origin::Api,
        );
        serde_json::from_str(&message_frame(&m, false)).unwrap()
    }

    #[test]
    fn kinds_follow_the_topic_shapes() {
        assert_eq!(kind_of("devices/d/telemetry"), ("telemetry", Some("d")));
        assert_eq!(kind_of("devices/d/events/alarm"), ("event", Some("d")));
        assert_eq!(kind_of("devices/d/state/reported"), ("state", Some("d")));
        assert_eq!(kind_of("devices/d/commands/reboot"), ("command", Some("d")));
        assert_eq!(
            kind_of("devices/d/commands/reboot/response"),
            ("command", Some("d"))
        );
        assert_eq!(kind_of("$ferrule/devices/d/twin"), ("twin", Some("d")));
        assert_eq!(
            kind_of("$ferrule/devices/d/connectivity"),
            ("connectivity", Some("d"))
        );
        assert_eq!(kind_of("$ferrule/devices/d/alarms"), ("alarm", Some("d")));
        assert_eq!(kind_of("$ferrule/alarms"), ("alarm", None));
        assert_eq!(kind_of("$ferrule/alarms/x"), ("message", None));
        assert_eq!(kind_of("devices/d/telemetry/x"), ("message", Some("d")));
        assert_eq!(kind_of("devices/d/events"), ("message", Some("d")));
        assert_eq!(kind_of("plant/line1"), ("message", None));
        assert_eq!(kind_of("$ferrule/other"), ("message", None));
    }

    #[test]
    fn payloads_are_json_text_or_base64() {
        let j = frame("devices/d/telemetry", br#" {"t": 21.5} "#);
        assert_eq!(j["payload"], json!({"t": 21.5}));
        assert_eq!(j["kind"], "telemetry");
        assert_eq!(j["device"], "d");
        assert_eq!(j["qos"], 1);
        assert_eq!(j["retain"], false);
        assert!(j.get("payload_base64").is_none());

        let t = frame("a/b", b"on");
        assert_eq!(t["payload"], "on");
        assert!(t.get("device").is_none());

        let b = frame("a/b", b"\xff\x00");
        assert!(b.get("payload").is_none());
        assert_eq!(b["payload_base64"], "/wA=");
    }

    #[test]
    fn client_ops_parse_and_unknown_ones_do_not() {
        let op: ClientOp = serde_json::from_str(r#"{"op":"subscribe","filters":["a/#"]}"#).unwrap();
        assert!(matches!(op, ClientOp::Subscribe { filters } if filters == ["a/#"]));
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"publish","filters":[]}"#).is_err());
        assert!(
            serde_json::from_str::<ClientOp>(r#"{"op":"subscribe","filters":[],"x":1}"#).is_err()
        );
    }
}

//! The alarm as the API shows it and as its transitions are published.
//!
//! One shape for both, so a live stream's `alarm` frame and
//! `GET /api/v1/alarms/{id}` never disagree.

use bytes::Bytes;
use ferrule_core::DeviceId;
use ferrule_store::alarms::AlarmRecord;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `$ferrule/devices/{id}/alarms`: transitions of a device's alarms.
/// Internal: no client may publish on `$` topics (the broker and the
/// HTTP ingest refuse them).
pub fn device_topic(device: &DeviceId) -> String {
    format!("$ferrule/devices/{device}/alarms")
}

/// `$ferrule/alarms`: transitions of alarms about no one device.
pub const TENANT_TOPIC: &str = "$ferrule/alarms";

/// The filter of every device's alarm transitions.
pub const DEVICE_ALARMS_FILTER: &str = "$ferrule/devices/+/alarms";

/// The topic an alarm's transitions are published on.
pub fn topic_of(alarm: &AlarmRecord) -> String {
    alarm
        .device
        .as_ref()
        .map_or_else(|| TENANT_TOPIC.to_owned(), device_topic)
}

/// An alarm, with times in RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmView {
    pub id: u64,
    pub device: Option<String>,
    #[serde(rename = "type")]
    pub alarm_type: String,
    /// `critical`, `major`, `minor`, `warning` or `indeterminate`.
    pub severity: String,
    /// `active`, `acknowledged` or `cleared`.
    pub state: String,
    pub details: Value,
    /// How many times it was raised while open.
    pub count: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Who raised it: `rule:ID`, `user:ID`, `key:ID`.
    pub originator: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
    pub cleared_by: Option<String>,
    pub cleared_at: Option<Timestamp>,
}

fn time(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl From<&AlarmRecord> for AlarmView {
    fn from(a: &AlarmRecord) -> Self {
        AlarmView {
            id: a.id,
            device: a.device.as_ref().map(|d| d.as_str().to_owned()),
            alarm_type: a.alarm_type.clone(),
            severity: a.severity.as_str().to_owned(),
            state: a.state.as_str().to_owned(),
            details: a.details.clone(),
            count: a.count,
            first_seen: time(a.first_seen),
            last_seen: time(a.last_seen),
            originator: a.originator.clone(),
            acknowledged_by: a.acknowledged_by.clone(),
            acknowledged_at: a.acknowledged_at.map(time),
            cleared_by: a.cleared_by.clone(),
            cleared_at: a.cleared_at.map(time),
        }
    }
}

/// What happened to an alarm, as its published message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmEvent {
    Raised,
    Updated,
    Acknowledged,
    Cleared,
}

impl AlarmEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmEvent::Raised => "raised",
            AlarmEvent::Updated => "updated",
            AlarmEvent::Acknowledged => "acknowledged",
            AlarmEvent::Cleared => "cleared",
        }
    }
}

/// The payload of a transition's message: `{"event", "alarm"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmMessage {
    pub event: AlarmEvent,
    pub alarm: AlarmView,
}

impl AlarmMessage {
    pub fn to_bytes(&self) -> Bytes {
        // Plain data with string keys: serializing cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

//! The profile guard: the router's first intake stage.

use std::sync::Arc;

use ferrule_bus::{Accepted, Intake, Refused};
use ferrule_core::Message;

use super::Profiles;
use super::observe::{Checked, SchemaRefused};
use super::schema::telemetry_violation;
use crate::topics::device_of;

/// Refuses, for a device whose profile has a schema, telemetry whose
/// records break the telemetry schema and reported state that breaks the
/// state schema (`Refused::Invalid`: MQTT 5 PUBACK 0x99, HTTP 400, with
/// the path and the rule). Everything else passes untouched, payloads that
/// are not JSON included: the stages behind refuse those.
///
/// Runs on the publisher's task: a read lock and, only for a device with a
/// schema, one JSON parse.
pub struct ProfileGuard {
    profiles: Profiles,
}

impl ProfileGuard {
    pub fn new(profiles: Profiles) -> Self {
        Self { profiles }
    }
}

impl Intake for ProfileGuard {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused> {
        let topic: &str = &message.topic;
        let (device, kind) = if let Some(d) = device_of(topic, "telemetry") {
            (d, Checked::Telemetry)
        } else if let Some(d) = device_of(topic, "state/reported") {
            (d, Checked::State)
        } else {
            return Ok(Accepted::default());
        };
        // Internal topics are the server's own.
        if topic.starts_with('$') {
            return Ok(Accepted::default());
        }
        let Some(profile) = self.profiles.checking(&message.tenant, device) else {
            return Ok(Accepted::default());
        };
        let schema = match kind {
            Checked::Telemetry => profile.telemetry.as_ref(),
            Checked::State => profile.state.as_ref(),
        };
        let Some(schema) = schema else {
            return Ok(Accepted::default());
        };
        let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
            return Ok(Accepted::default());
        };
        let violation = match kind {
            Checked::Telemetry => telemetry_violation(schema, &payload),
            Checked::State => schema.violation(&payload, ""),
        };
        match violation {
            None => Ok(Accepted::default()),
            Some(why) => {
                SchemaRefused {
                    tenant: &message.tenant,
                    device,
                    profile: &profile.name,
                    kind,
                    why: &why,
                }
                .emit();
                Err(Refused::Invalid(why))
            }
        }
    }
}

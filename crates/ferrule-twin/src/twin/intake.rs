//! [`TwinIntake`]: reported state taken from the router before fan-out,
//! so the publisher's acknowledgement waits until the twin is stored; and
//! the topics Ferrule writes for a device kept Ferrule's.

use std::sync::Arc;

use ferrule_bus::{Accepted, Intake, Refused, Ticket};
use ferrule_core::{DeviceId, Ledger, Message, Origin};
use ferrule_store::Directory;
use serde_json::Value;

use super::document;
use super::{TwinError, Twins};

/// What a topic means to the twin.
#[derive(Debug, PartialEq, Eq)]
enum TwinTopic<'a> {
    /// `devices/{id}/state/reported`: the device's state.
    Reported(&'a str),
    /// `devices/{id}/state/desired` and `…/state/delta`: Ferrule's to write.
    Written(&'a str),
}

fn parse(topic: &str) -> Option<TwinTopic<'_>> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    match rest {
        "state/reported" => Some(TwinTopic::Reported(device)),
        "state/desired" | "state/delta" => Some(TwinTopic::Written(device)),
        _ => None,
    }
}

/// The twin's stage in the router's intake.
pub struct TwinIntake {
    twins: Twins,
    directory: Directory,
}

impl TwinIntake {
    pub fn new(twins: Twins, directory: Directory) -> Self {
        Self { twins, directory }
    }
}

fn refused(reason: &'static str, refusal: Refused) -> Result<Accepted, Refused> {
    metrics::counter!("ferrule_twin_refused_total", "reason" => reason).increment(1);
    Err(refusal)
}

impl Intake for TwinIntake {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused> {
        let device = match parse(&message.topic) {
            None => return Ok(Accepted::default()),
            Some(TwinTopic::Written(_)) if matches!(message.origin, Origin::System) => {
                return Ok(Accepted::default());
            }
            Some(TwinTopic::Written(device)) => {
                return refused(
                    "written_by_ferrule",
                    Refused::Forbidden(format!(
                        "devices/{device}/state/desired and state/delta are written by Ferrule; \
                         report state on devices/{device}/state/reported, change desired state \
                         with PATCH /api/v1/devices/{device}/state"
                    )),
                );
            }
            Some(TwinTopic::Reported(device)) => device,
        };
        // Not a device id: nothing could own it, so it is only routed.
        let Ok(device) = DeviceId::new(device) else {
            return Ok(Accepted::default());
        };
        if !self.directory.has_device(&message.tenant, &device) {
            return refused(
                "unknown_device",
                Refused::UnknownDevice(format!(
                    "no such device {device} in this tenant: create it before reporting its state"
                )),
            );
        }
        if message.payload.len() > document::MAX_DOCUMENT_BYTES {
            return refused(
                "too_large",
                Refused::Invalid(format!(
                    "reported state is {} bytes, over the limit of {}",
                    message.payload.len(),
                    document::MAX_DOCUMENT_BYTES
                )),
            );
        }
        let value: Value = match serde_json::from_slice(&message.payload) {
            Ok(v) => v,
            Err(e) => {
                return refused(
                    "not_json",
                    Refused::Invalid(format!("reported state is not valid JSON: {e}")),
                );
            }
        };
        let patch = match document::check_patch(&value) {
            Ok(p) => p.clone(),
            Err(e) => return refused("shape", Refused::Invalid(e.to_string())),
        };
        let actor = ferrule_core::PrincipalKind::device_owner(&device);
        match self.twins.report(
            (message.tenant.clone(), device),
            patch,
            message.received_at_ms,
            actor,
            message.payload.len(),
        ) {
            Ok(seq) => Ok(Accepted {
                durable_after: Ticket::on(Ledger::Twin, seq),
                backpressure: None,
                points: 0,
            }),
            Err(TwinError::Document(e)) => refused("too_large", Refused::Invalid(e.to_string())),
            Err(e) => Err(Refused::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_topics() {
        assert_eq!(
            parse("devices/d/state/reported"),
            Some(TwinTopic::Reported("d"))
        );
        assert_eq!(
            parse("devices/d/state/desired"),
            Some(TwinTopic::Written("d"))
        );
        assert_eq!(
            parse("devices/d/state/delta"),
            Some(TwinTopic::Written("d"))
        );
        assert_eq!(parse("devices/d/state"), None);
        assert_eq!(parse("devices/d/telemetry"), None);
        assert_eq!(parse("other/d/state/reported"), None);
    }
}

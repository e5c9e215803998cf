//! What a rule's actions do with one output, rendered in full before
//! anything is done: the live run executes these plans and the dry run
//! returns them, so a dry run shows exactly what the live run then does.

use ferrule_core::topic::validate_name;
use serde::Serialize;
use serde_json::{Map, Value};

use super::compiled::CompiledAction;
use crate::alarms::Transition;
use crate::model::AlarmOp;
use crate::webhook::{RetryPolicy, WebhookRequest};

/// One action, rendered for one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Planned {
    Republish {
        topic: String,
        qos: u8,
        retain: bool,
        /// The payload exactly as published.
        payload: String,
    },
    Webhook {
        #[serde(flatten)]
        request: WebhookRequest,
        #[serde(skip)]
        policy: Option<RetryPolicy>,
    },
    Store {
        device: String,
        /// The telemetry as stored (the JSON of a telemetry message).
        values: Value,
    },
    Alarm {
        op: AlarmOp,
        device: Option<String>,
        alarm_type: String,
        severity: String,
        details: Value,
        /// In a dry run: what raising or clearing would do now.
        #[serde(skip_serializing_if = "Option::is_none")]
        transition: Option<Transition>,
    },
    Command {
        device: String,
        name: String,
        params: Value,
        ttl_s: u64,
    },
}

impl Planned {
    pub fn kind(&self) -> &'static str {
        match self {
            Planned::Republish { .. } => "republish",
            Planned::Webhook { .. } => "webhook",
            Planned::Store { .. } => "store",
            Planned::Alarm { .. } => "alarm",
            Planned::Command { .. } => "command",
        }
    }
}

/// A topic a rule may publish on: a valid topic name outside `$…` (the
/// internal `$ferrule/…` topics are Ferrule's own; a rule must not forge
/// twin, connectivity or alarm events).
pub(crate) fn check_republish_topic(topic: &str) -> Result<(), String> {
    validate_name(topic).map_err(|e| format!("{topic:?}: {e}"))?;
    if topic.starts_with('$') {
        return Err(format!("{topic:?}: rules may not publish on $ topics"));
    }
    Ok(())
}

/// The device an action is about: its own template, else the message's.
fn device(
    template: &Option<crate::template::Template>,
    output: &Map<String, Value>,
    message_device: Option<&str>,
) -> Option<String> {
    match template {
        Some(t) => Some(t.render(output)).filter(|d| !d.is_empty()),
        None => message_device.map(str::to_owned),
    }
}

fn checked_device(d: Option<String>) -> Result<String, String> {
    let d = d.ok_or("no device: the message is not a device's, and the action names none")?;
    ferrule_core::DeviceId::new(d.clone()).map_err(|e| format!("device {d:?}: {e}"))?;
    Ok(d)
}

/// Renders one action for one output.
pub(crate) fn plan(
    action: &CompiledAction,
    output: &Map<String, Value>,
    message_device: Option<&str>,
) -> Result<Planned, String> {
    let whole = || Value::Object(output.clone());
    Ok(match action {
        CompiledAction::Republish {
            topic,
            qos,
            retain,
            payload,
        } => {
            let topic = topic.render(output);
            check_republish_topic(&topic)?;
            let payload = match payload.as_ref().map(|p| p.render(output)) {
                // A string is published as its text, not as a JSON string.
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => serde_json::to_string(output).unwrap_or_default(),
            };
            Planned::Republish {
                topic,
                qos: qos.as_u8(),
                retain: *retain,
                payload,
            }
        }
        CompiledAction::Webhook {
            method,
            url,
            headers,
            body,
            policy,
        } => Planned::Webhook {
            request: WebhookRequest {
                method: method.clone(),
                url: url.render(output),
                headers: headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.render(output)))
                    .collect(),
                body: match body {
                    Some(b) => b.render(output),
                    None => serde_json::to_string(output).unwrap_or_default(),
                },
            },
            policy: Some(*policy),
        },
        CompiledAction::Store { device: d, values } => {
            let values = values.as_ref().map_or_else(whole, |v| v.render(output));
            if !(values.is_object() || values.is_array()) {
                return Err("store: the values must be a JSON object or array".into());
            }
            Planned::Store {
                device: checked_device(device(d, output, message_device))?,
                values,
            }
        }
        CompiledAction::Alarm {
            op,
            alarm_type,
            severity,
            device: d,
            details,
        } => {
            let alarm_type = alarm_type.render(output);
            if alarm_type.is_empty() {
                return Err("alarm: the alarm type rendered empty".into());
            }
            let device = device(d, output, message_device);
            if let Some(d) = &device {
                ferrule_core::DeviceId::new(d.clone()).map_err(|e| format!("device {d:?}: {e}"))?;
            }
            Planned::Alarm {
                op: *op,
                device,
                alarm_type,
                severity: severity.as_str().to_owned(),
                details: details.as_ref().map_or_else(whole, |v| v.render(output)),
                transition: None,
            }
        }
        CompiledAction::Command {
            name,
            device: d,
            params,
            ttl,
        } => Planned::Command {
            device: checked_device(device(d, output, message_device))?,
            name: name.clone(),
            params: params
                .as_ref()
                .map_or_else(|| Value::Object(Map::new()), |p| p.render(output)),
            ttl_s: ttl.as_secs(),
        },
    })
}

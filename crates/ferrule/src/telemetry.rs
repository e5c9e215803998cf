//! The telemetry writer's place on the router: its [`Intake`] stores what
//! devices send on `devices/{id}/telemetry` and `devices/{id}/events/{type}`
//! before the message is routed, refusing invalid payloads and devices that
//! do not exist; and the background retention pass.

use std::sync::Arc;
use std::time::Duration;

use ferrule_bus::{Accepted, Intake, Ledger, Refused, Ticket};
use ferrule_core::message::now_ms;
use ferrule_core::telemetry::{PayloadLimits, parse_telemetry};
use ferrule_core::{DeviceId, Message, Origin, TenantId};
use ferrule_store::telemetry::{NewEvent, TelemetryError, TelemetryStore, retention};
use ferrule_store::{Directory, MetaStore};
use tokio_util::sync::CancellationToken;

use crate::observe::{RefusalLog, RefusalReason, TelemetryReceived, TelemetryRefused};
use crate::refusal_notices::Notices;

/// What a topic means to the telemetry store.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Telemetry(&'a str),
    Event(&'a str, &'a str),
}

impl<'a> Target<'a> {
    /// `devices/{id}/telemetry` or `devices/{id}/events/{type}`.
    fn of(topic: &'a str) -> Option<Target<'a>> {
        let rest = topic.strip_prefix("devices/")?;
        let (device, rest) = rest.split_once('/')?;
        if rest == "telemetry" {
            return Some(Target::Telemetry(device));
        }
        let event_type = rest.strip_prefix("events/")?;
        (!event_type.is_empty()).then_some(Target::Event(device, event_type))
    }
}

/// Stores telemetry and events as they pass the router.
pub struct TelemetryIntake {
    store: Arc<dyn TelemetryStore>,
    /// Only devices that exist keep data: a deleted device's id must not
    /// gather any before it is created anew (which purges what was left).
    directory: Directory,
    limits: PayloadLimits,
    /// Explains refusals to the device on `devices/{id}/rejected`.
    notices: Option<Notices>,
    refusal_log: RefusalLog,
}

impl TelemetryIntake {
    pub fn new(
        store: Arc<dyn TelemetryStore>,
        directory: Directory,
        max_future_skew: Duration,
    ) -> Self {
        Self {
            store,
            directory,
            limits: PayloadLimits {
                max_future_skew_ms: max_future_skew.as_millis() as i64,
                ..PayloadLimits::default()
            },
            notices: None,
            refusal_log: RefusalLog::default(),
        }
    }

    /// Sends refusal notices to devices (see `refusal_notices`).
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = Some(notices);
        self
    }

    /// Counts and logs a refusal of an existing device's data, and tells
    /// an MQTT device why.
    fn refused_device(
        &self,
        message: &Message,
        device: &DeviceId,
        reason: RefusalReason,
        why: &str,
    ) {
        self.refused(&message.tenant, device.as_str(), reason, why);
        // An HTTP caller has its answer in the response already.
        if let Some(notices) = &self.notices
            && matches!(message.origin, Origin::Mqtt { .. })
        {
            notices.refused(&message.tenant, device, &message.topic, reason, why);
        }
    }

    fn refused(&self, tenant: &TenantId, device: &str, reason: RefusalReason, why: &str) {
        TelemetryRefused {
            tenant,
            device,
            reason,
            why,
        }
        .emit(&self.refusal_log);
    }
}

impl Intake for TelemetryIntake {
    fn accept(&self, message: &Arc<Message>) -> Result<Accepted, Refused> {
        let Some(target) = Target::of(&message.topic) else {
            return Ok(Accepted::default());
        };
        let device_str = match target {
            Target::Telemetry(d) | Target::Event(d, _) => d,
        };
        // Not a device id (a wildcard-like or oversized level): nothing
        // could ever query it, so it is only routed.
        let Ok(device) = DeviceId::new(device_str) else {
            return Ok(Accepted::default());
        };
        let tenant = &message.tenant;
        let unknown = || {
            let why = format!(
                "no such device {device_str} in this tenant: create it before sending its data"
            );
            self.refused(tenant, device_str, RefusalReason::UnknownDevice, &why);
            Err(Refused::UnknownDevice(why))
        };
        if !self.directory.has_device(tenant, &device) {
            return unknown();
        }
        // Storage is behind. An MQTT publisher is slowed below (it stops
        // being read until the store catches up); an HTTP request cannot
        // be, so it is asked to retry (503 with Retry-After).
        if matches!(message.origin, Origin::Api) && self.store.busy() {
            let why = "telemetry storage is behind; retry shortly";
            self.refused(tenant, device_str, RefusalReason::Busy, why);
            return Err(Refused::Unavailable(why.into()));
        }
        let (readings, events) = match target {
            Target::Telemetry(_) => {
                let mut readings = Vec::new();
                if let Err(e) = parse_telemetry(
                    &message.payload,
                    message.received_at_ms,
                    &self.limits,
                    &mut readings,
                ) {
                    let why = e.to_string();
                    self.refused_device(message, &device, RefusalReason::Payload(e.kind()), &why);
                    return Err(Refused::Invalid(why));
                }
                TelemetryReceived {
                    points: readings.len() as u64,
                }
                .emit();
                (readings, Vec::new())
            }
            Target::Event(_, event_type) => (
                Vec::new(),
                vec![NewEvent {
                    ts: message.received_at_ms,
                    event_type: event_type.to_owned(),
                    payload: message.payload.clone(),
                }],
            ),
        };
        // Queued while the device is known to exist: its deletion, which
        // queues the purge of its telemetry, waits for this and the other
        // way round (see `Directory`).
        let appended = self.directory.with_device(tenant, &device, || {
            self.store.append(tenant, &device, readings, events)
        });
        let Some(appended) = appended else {
            // Deleted while the payload was parsed.
            return unknown();
        };
        match appended {
            Ok(appended) => Ok(Accepted {
                durable_after: if appended.ticket == 0 {
                    Ticket::NONE
                } else {
                    Ticket::on(Ledger::Telemetry, appended.ticket)
                },
                backpressure: appended.backpressure,
            }),
            Err(e @ TelemetryError::QuotaExceeded { .. }) => {
                self.refused_device(
                    message,
                    &device,
                    RefusalReason::QuotaExceeded,
                    &e.to_string(),
                );
                Err(Refused::QuotaExceeded(e.to_string()))
            }
            Err(e) => {
                self.refused_device(message, &device, RefusalReason::Unavailable, &e.to_string());
                Err(Refused::Unavailable(e.to_string()))
            }
        }
    }
}

/// Applies every tenant's retention now, then every `interval`.
pub async fn retention_loop(
    meta: Arc<dyn MetaStore>,
    telemetry: Arc<dyn TelemetryStore>,
    server_default: Option<u32>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let tenants = match all_tenants(&*meta).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "retention: listing tenants failed");
                continue;
            }
        };
        for tenant in tenants {
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) =
                retention::apply(&*meta, &*telemetry, &tenant, now_ms(), server_default).await
            {
                tracing::warn!(%tenant, error = %e, "retention pass failed");
            }
        }
    }
}

async fn all_tenants(meta: &dyn MetaStore) -> Result<Vec<TenantId>, ferrule_store::StoreError> {
    let mut out = Vec::new();
    let mut page = ferrule_store::PageRequest {
        limit: 1000,
        after: None,
    };
    loop {
        let got = meta.list_tenants(&page).await?;
        out.extend(got.items.iter().map(|t| t.id.clone()));
        match got.next {
            Some(next) => page.after = Some(next),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_with_meaning() {
        assert_eq!(
            Target::of("devices/d1/telemetry"),
            Some(Target::Telemetry("d1"))
        );
        assert_eq!(
            Target::of("devices/d1/events/boot"),
            Some(Target::Event("d1", "boot"))
        );
        assert_eq!(Target::of("devices/d1/events/"), None);
        assert_eq!(Target::of("devices/d1/telemetry/x"), None);
        assert_eq!(Target::of("devices/d1/state/reported"), None);
        assert_eq!(Target::of("other/d1/telemetry"), None);
    }
}

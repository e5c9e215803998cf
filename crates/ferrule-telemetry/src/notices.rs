//! Refusal notices: telemetry an MQTT device sent and the intake refused
//! is explained to the device on `devices/{id}/rejected` (QoS 0, JSON `{"reason", "detail",
//! "topic"}`), which it may subscribe to (its own subtree). An MQTT 5 device
//! also gets the reason in its PUBACK; an MQTT 3.1.1 device, whose PUBACK
//! carries nothing, learns why only here.
//!
//! Notices are rate-limited per device (`telemetry.refusal_notices_per_
//! second`) so that a device stuck sending bad payloads cannot turn the
//! broker into an amplifier, and go through a bounded queue to a task that
//! publishes them (the intake runs inside the router's publish and must not
//! publish itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferrule_bus::Router;
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, Message, Origin, QoS, TenantId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::observe::{NoticeOutcome, RefusalNoticed, RefusalReason};

/// Notices waiting for the publishing task at most; more are dropped.
const QUEUE: usize = 1024;
/// Devices tracked before windows of past seconds are forgotten.
const TRACKED: usize = 65_536;

/// Where the intake reports refusals.
pub struct Notices {
    tx: mpsc::Sender<Arc<Message>>,
    per_second: u32,
    /// Per device, the current second and the notices sent in it.
    windows: Mutex<HashMap<(TenantId, DeviceId), (i64, u32)>>,
}

impl Notices {
    /// Notices and the receiving end for [`run`].
    pub fn new(per_second: u32) -> (Self, mpsc::Receiver<Arc<Message>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let notices = Self {
            tx,
            per_second,
            windows: Mutex::new(HashMap::new()),
        };
        (notices, rx)
    }

    /// Tells `device` that what it sent on `topic` was refused, unless it
    /// already got its share of notices this second.
    pub fn refused(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        topic: &str,
        reason: RefusalReason,
        detail: &str,
    ) {
        if self.per_second == 0 {
            return;
        }
        let outcome = if self.allow(tenant, device) {
            let payload = serde_json::json!({
                "reason": reason.label(),
                "detail": detail,
                "topic": topic,
            });
            let message = Message::new(
                tenant.clone(),
                format!("devices/{device}/rejected").into(),
                payload.to_string().into(),
                QoS::AtMostOnce,
                Origin::System,
            );
            match self.tx.try_send(Arc::new(message)) {
                Ok(()) => NoticeOutcome::Sent,
                Err(_) => NoticeOutcome::Dropped,
            }
        } else {
            NoticeOutcome::RateLimited
        };
        RefusalNoticed { tenant, outcome }.emit();
    }

    fn allow(&self, tenant: &TenantId, device: &DeviceId) -> bool {
        let second = now_ms().div_euclid(1000);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= TRACKED {
            windows.retain(|_, (s, _)| *s == second);
        }
        let window = windows
            .entry((tenant.clone(), device.clone()))
            .or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 >= self.per_second {
            return false;
        }
        window.1 += 1;
        true
    }
}

/// Publishes queued notices until shutdown.
pub async fn run(
    router: Arc<Router>,
    mut rx: mpsc::Receiver<Arc<Message>>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        router.publish(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_JSON: RefusalReason = RefusalReason::Payload("not_json");

    #[test]
    fn notices_are_limited_per_device_and_second() {
        let (n, mut rx) = Notices::new(2);
        let t = TenantId::new("default").unwrap();
        let (a, b) = (DeviceId::new("a").unwrap(), DeviceId::new("b").unwrap());
        for _ in 0..5 {
            n.refused(&t, &a, "devices/a/telemetry", NOT_JSON, "bad");
        }
        n.refused(&t, &b, "devices/b/telemetry", NOT_JSON, "bad");
        let mut topics = Vec::new();
        while let Ok(m) = rx.try_recv() {
            topics.push(m.topic.to_string());
        }
        // Unless the second turned over in between, a gets 2 and b 1.
        assert!((3..=5).contains(&topics.len()), "{topics:?}");
        assert_eq!(topics.last().unwrap(), "devices/b/rejected");
        let first: serde_json::Value = {
            let (n, mut rx) = Notices::new(1);
            n.refused(&t, &a, "devices/a/telemetry", NOT_JSON, "why");
            serde_json::from_slice(&rx.try_recv().unwrap().payload).unwrap()
        };
        assert_eq!(
            first,
            serde_json::json!({"reason": "not_json", "detail": "why", "topic": "devices/a/telemetry"})
        );
    }
}

//! Devices' online state, from the broker's connectivity events.
//!
//! The broker publishes a [`ConnectivityEvent`] on
//! `$ferrule/devices/{id}/connectivity` when a device's MQTT connection
//! opens and when it ends. [`Connectivity`] subscribes to those in every
//! tenant and keeps, per device, how many connections are open (a device
//! is online while any is: a takeover or a second client id delivers its
//! connect and the old disconnect in either order), when it was last seen,
//! connected and disconnected, and the last connection's client id,
//! address, protocol and disconnect reason.
//!
//! Delivery only updates memory and queues the event in the device's event
//! log; [`Connectivity::run`] saves changed devices to the
//! [`ConnectivityStore`] in the background, coalescing bursts. At start,
//! [`Connectivity::load`] reads the saved states back: a device saved as
//! online was cut off by a crash, so it comes back offline with reason
//! `connection_lost` (after a clean stop its reason is `server_shutdown`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrule_bus::{Delivered, Entry, Matched, Router, Subscriber, SubscriptionOptions};
use ferrule_core::connectivity::{ConnectivityChange, ConnectivityEvent, DisconnectReason};
use ferrule_core::{DeviceId, Message, Origin, QoS, TenantId};
use ferrule_store::telemetry::{NewEvent, TelemetryStore};
use ferrule_store::{ConnectivityStore, DeviceConnectivity, Directory};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::topics;

/// How long the writer waits after a change for more before saving: a
/// burst of reconnects becomes one transaction.
const COALESCE: Duration = Duration::from_millis(200);
/// Most device states saved in one transaction.
const SAVE_BATCH: usize = 1000;
/// The event log's type for connectivity events.
pub const EVENT_TYPE: &str = "connectivity";

/// A device's connectivity as the API shows it.
pub type DeviceState = DeviceConnectivity;

/// Which devices are online now. Cheap to clone: clones share it.
#[derive(Clone, Default)]
pub struct Connectivity {
    inner: Arc<Tracker>,
}

#[derive(Default)]
struct Tracker {
    devices: RwLock<HashMap<TenantId, HashMap<DeviceId, Tracked>>>,
    /// Devices changed since the last save; at most one entry per known
    /// device, so bounded by the devices that exist.
    dirty: Mutex<HashSet<(TenantId, DeviceId)>>,
    changed: Notify,
    /// Where events are logged and which devices exist; absent in unit
    /// tests that only need the state.
    sinks: Option<Sinks>,
}

struct Sinks {
    store: Arc<dyn ConnectivityStore>,
    telemetry: Arc<dyn TelemetryStore>,
    directory: Directory,
}

#[derive(Default)]
struct Tracked {
    /// Connections open now (in this process).
    open: u32,
    state: DeviceConnectivity,
}

impl Connectivity {
    /// A tracker over saved states: devices saved as online come back
    /// offline (see the module docs). Subscribe it with [`Self::attach`],
    /// then spawn [`Self::run`].
    pub async fn load(
        store: Arc<dyn ConnectivityStore>,
        telemetry: Arc<dyn TelemetryStore>,
        directory: Directory,
    ) -> ferrule_store::Result<Self> {
        let saved = store.load_connectivity().await?;
        let mut devices: HashMap<TenantId, HashMap<DeviceId, Tracked>> = HashMap::new();
        let mut dirty = HashSet::new();
        for (tenant, device, mut state) in saved {
            if state.online {
                // Cut off without an event: the process stopped abruptly.
                state.online = false;
                state.disconnected_at = state.last_seen.or(state.connected_at);
                state.last_reason = Some(DisconnectReason::ConnectionLost.as_str().to_owned());
                dirty.insert((tenant.clone(), device.clone()));
            }
            devices
                .entry(tenant)
                .or_default()
                .insert(device, Tracked { open: 0, state });
        }
        let crashed = dirty.len();
        if crashed > 0 {
            tracing::info!(
                devices = crashed,
                "devices online at an unclean stop are now offline (connection_lost)"
            );
        }
        Ok(Connectivity {
            inner: Arc::new(Tracker {
                devices: RwLock::new(devices),
                dirty: Mutex::new(dirty),
                changed: Notify::new(),
                sinks: Some(Sinks {
                    store,
                    telemetry,
                    directory,
                }),
            }),
        })
    }

    /// Subscribes the tracker to every tenant's connectivity events.
    pub fn attach(&self, router: &Router) {
        router.subscribe_everywhere(
            topics::CONNECTIVITY_FILTER,
            Entry {
                id: router.next_subscriber_id(),
                subscriber: Arc::new(self.clone()),
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            },
        );
    }

    /// Whether the device has an MQTT connection open now.
    pub fn is_online(&self, tenant: &TenantId, device: &DeviceId) -> bool {
        self.inner
            .devices
            .read()
            .get(tenant)
            .and_then(|d| d.get(device))
            .is_some_and(|t| t.open > 0)
    }

    /// How many of the tenant's devices have an MQTT connection open now.
    pub fn online_count(&self, tenant: &TenantId) -> usize {
        self.inner
            .devices
            .read()
            .get(tenant)
            .map_or(0, |d| d.values().filter(|t| t.open > 0).count())
    }

    /// What is known of the device's connections; `None` if it never connected.
    pub fn state(&self, tenant: &TenantId, device: &DeviceId) -> Option<DeviceState> {
        self.inner
            .devices
            .read()
            .get(tenant)
            .and_then(|d| d.get(device))
            .map(|t| t.state.clone())
    }

    /// Forgets a deleted device (`device: None`: a deleted tenant's devices).
    pub fn forget(&self, tenant: &TenantId, device: Option<&DeviceId>) {
        {
            let mut devices = self.inner.devices.write();
            match device {
                Some(d) => {
                    if let Some(of_tenant) = devices.get_mut(tenant) {
                        of_tenant.remove(d);
                    }
                }
                None => {
                    devices.remove(tenant);
                }
            }
        }
        self.inner
            .dirty
            .lock()
            .retain(|(t, d)| t != tenant || device.is_some_and(|gone| gone != d));
    }

    /// Applies one event to the device's state and marks it for saving.
    fn apply(&self, tenant: &TenantId, device: &DeviceId, e: &ConnectivityEvent) {
        let mut devices = self.inner.devices.write();
        let t = devices
            .entry(tenant.clone())
            .or_default()
            .entry(device.clone())
            .or_default();
        let s = &mut t.state;
        match e.event {
            ConnectivityChange::Connected => {
                t.open += 1;
                s.online = true;
                s.connected_at = Some(e.ts);
                s.client_id = Some(e.client_id.clone());
                s.client_address = Some(e.address.clone());
                s.protocol = Some(e.protocol.clone());
                s.last_seen = Some(s.last_seen.map_or(e.ts, |seen| seen.max(e.ts)));
            }
            ConnectivityChange::Disconnected => {
                t.open = t.open.saturating_sub(1);
                s.online = t.open > 0;
                s.disconnected_at = Some(e.ts);
                s.last_reason = e.reason.map(|r| r.as_str().to_owned());
                if let Some(seen) = e.last_seen {
                    s.last_seen = Some(s.last_seen.map_or(seen, |old| old.max(seen)));
                }
            }
        }
        drop(devices);
        self.inner
            .dirty
            .lock()
            .insert((tenant.clone(), device.clone()));
        self.inner.changed.notify_one();
    }

    /// Saves changed devices until `stop`, then saves what is left (call it
    /// after the broker's connections closed, so their `server_shutdown`
    /// disconnects are in).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.inner.changed.notified() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(COALESCE) => {}
            }
            self.save().await;
        }
        self.save().await;
    }

    /// Saves the dirty devices, in batches.
    async fn save(&self) {
        let Some(sinks) = &self.inner.sinks else {
            self.inner.dirty.lock().clear();
            return;
        };
        loop {
            let batch: Vec<(TenantId, DeviceId, DeviceConnectivity)> = {
                let mut dirty = self.inner.dirty.lock();
                let keys: Vec<_> = dirty.iter().take(SAVE_BATCH).cloned().collect();
                for k in &keys {
                    dirty.remove(k);
                }
                let devices = self.inner.devices.read();
                keys.into_iter()
                    .filter_map(|(t, d)| {
                        let state = devices.get(&t)?.get(&d)?.state.clone();
                        Some((t, d, state))
                    })
                    .collect()
            };
            if batch.is_empty() {
                return;
            }
            let n = batch.len();
            if let Err(e) = sinks.store.save_connectivity(batch).await {
                // The state stays right in memory; the next change of each
                // device saves it again.
                tracing::warn!(error = %e, devices = n, "saving device connectivity failed");
                metrics::counter!("ferrule_device_connectivity_save_failures_total").increment(1);
                return;
            }
        }
    }

    /// The event's device, if it came from the broker and names the
    /// device of its topic.
    fn parse(message: &Message) -> Result<(DeviceId, ConnectivityEvent), &'static str> {
        if !matches!(message.origin, Origin::System) {
            return Err("not_from_broker");
        }
        let device = topics::device_of(&message.topic, "connectivity").ok_or("bad_topic")?;
        let event: ConnectivityEvent =
            serde_json::from_slice(&message.payload).map_err(|_| "malformed")?;
        if event.device != device {
            return Err("bad_topic");
        }
        let device = DeviceId::new(device).map_err(|_| "bad_topic")?;
        Ok((device, event))
    }
}

impl Subscriber for Connectivity {
    fn deliver(&self, message: &Arc<Message>, _: &Matched) -> Delivered {
        let (device, event) = match Self::parse(message) {
            Ok(parsed) => parsed,
            Err(why) => {
                metrics::counter!("ferrule_device_connectivity_ignored_total", "why" => why)
                    .increment(1);
                return Delivered::default();
            }
        };
        let tenant = &message.tenant;
        metrics::counter!(
            "ferrule_device_connectivity_events_total",
            "event" => event.event.as_str(),
            "reason" => event.reason.map_or("none", DisconnectReason::as_str),
        )
        .increment(1);
        match &self.inner.sinks {
            // Only for devices that exist: a deleted device's last
            // disconnect must not bring its state back.
            Some(sinks) => {
                let logged = sinks.directory.with_device(tenant, &device, || {
                    self.apply(tenant, &device, &event);
                    sinks.telemetry.append(
                        tenant,
                        &device,
                        Vec::new(),
                        vec![NewEvent {
                            ts: event.ts,
                            event_type: EVENT_TYPE.to_owned(),
                            payload: Bytes::clone(&message.payload),
                        }],
                    )
                });
                if let Some(Err(e)) = logged {
                    tracing::warn!(error = %e, %tenant, %device, "logging a connectivity event failed");
                }
            }
            None => self.apply(tenant, &device, &event),
        }
        Delivered::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn event(
        change: ConnectivityChange,
        client: &str,
        ts: i64,
        reason: Option<DisconnectReason>,
    ) -> Arc<Message> {
        let e = ConnectivityEvent {
            device: "d1".into(),
            event: change,
            ts,
            client_id: client.into(),
            address: "127.0.0.1:1".into(),
            protocol: "5.0".into(),
            reason,
            last_seen: reason.map(|_| ts - 1),
        };
        Arc::new(Message::new(
            TenantId::default_tenant(),
            ByteString::from("$ferrule/devices/d1/connectivity"),
            e.to_json().into(),
            QoS::AtLeastOnce,
            Origin::System,
        ))
    }

    fn deliver(c: &Connectivity, m: Arc<Message>) {
        c.deliver(&m, &Matched::default());
    }

    #[test]
    fn a_takeover_keeps_the_device_online_in_either_order() {
        let (t, d) = (TenantId::default_tenant(), DeviceId::new("d1").unwrap());
        use ConnectivityChange::*;
        let takeover = Some(DisconnectReason::Takeover);
        for new_first in [true, false] {
            let c = Connectivity::default();
            deliver(&c, event(Connected, "a", 1, None));
            if new_first {
                deliver(&c, event(Connected, "b", 2, None));
                deliver(&c, event(Disconnected, "a", 3, takeover));
            } else {
                deliver(&c, event(Disconnected, "a", 2, takeover));
                deliver(&c, event(Connected, "b", 3, None));
            }
            assert!(c.is_online(&t, &d), "new first: {new_first}");
            let s = c.state(&t, &d).unwrap();
            assert!(s.online);
            assert_eq!(s.client_id.as_deref(), Some("b"));
            assert_eq!(s.last_reason.as_deref(), Some("takeover"));
            deliver(
                &c,
                event(
                    Disconnected,
                    "b",
                    9,
                    Some(DisconnectReason::ClientDisconnect),
                ),
            );
            assert!(!c.is_online(&t, &d));
            let s = c.state(&t, &d).unwrap();
            assert_eq!(s.last_reason.as_deref(), Some("client_disconnect"));
            assert_eq!(s.disconnected_at, Some(9));
            assert_eq!(s.last_seen, Some(8));
        }
    }

    #[test]
    fn events_not_from_the_broker_change_nothing() {
        let (t, d) = (TenantId::default_tenant(), DeviceId::new("d1").unwrap());
        let c = Connectivity::default();
        let mut forged = (*event(ConnectivityChange::Connected, "x", 1, None)).clone();
        forged.origin = Origin::Api;
        deliver(&c, Arc::new(forged));
        let mut other = (*event(ConnectivityChange::Connected, "x", 1, None)).clone();
        other.topic = ByteString::from("$ferrule/devices/d2/connectivity");
        deliver(&c, Arc::new(other));
        assert!(c.state(&t, &d).is_none());
        assert!(!c.is_online(&t, &DeviceId::new("d2").unwrap()));
    }

    #[test]
    fn a_forgotten_device_is_gone() {
        let (t, d) = (TenantId::default_tenant(), DeviceId::new("d1").unwrap());
        let c = Connectivity::default();
        deliver(&c, event(ConnectivityChange::Connected, "a", 1, None));
        c.forget(&t, Some(&d));
        assert!(c.state(&t, &d).is_none());
        deliver(&c, event(ConnectivityChange::Connected, "a", 1, None));
        c.forget(&t, None);
        assert!(!c.is_online(&t, &d));
    }
}

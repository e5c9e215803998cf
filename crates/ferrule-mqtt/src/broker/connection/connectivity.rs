//! Devices' connect and disconnect events: a device's connection publishes
//! a [`ConnectivityEvent`] on `$ferrule/devices/{id}/connectivity` in its
//! tenant when it opens and when it ends, for the connectivity tracker,
//! rules and live streams. Other clients (users, keys, anonymous) have none.

use std::net::SocketAddr;
use std::sync::Arc;

use bytestring::ByteString;
use ferrule_core::connectivity::{self, ConnectivityChange, ConnectivityEvent, DisconnectReason};
use ferrule_core::message::now_ms;
use ferrule_core::{DeviceId, Message, Origin, Principal, PrincipalKind, QoS};

use super::Connection;
use crate::codec::ProtocolVersion;

/// What a device's connection keeps for its events.
pub(super) struct DeviceLink {
    device: DeviceId,
    address: SocketAddr,
    /// When the client last sent something, ms since the epoch.
    last_seen_ms: i64,
}

impl DeviceLink {
    /// The link of a device's connection; `None` for other principals.
    pub(super) fn of(principal: &Principal, address: SocketAddr) -> Option<Box<Self>> {
        match &principal.kind {
            PrincipalKind::Device { id } => Some(Box::new(DeviceLink {
                device: id.clone(),
                address,
                last_seen_ms: now_ms(),
            })),
            _ => None,
        }
    }

    /// The client sent something: called once per read, not per packet.
    pub(super) fn heard(&mut self) {
        self.last_seen_ms = now_ms();
    }
}

fn protocol(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}

impl Connection {
    /// Publishes the device's connect or disconnect (a no-op for clients
    /// that are not devices). QoS 1, not retained, from Ferrule itself:
    /// clients cannot publish on `$` topics, so these are the only ones.
    pub(super) fn announce(&self, change: ConnectivityChange, reason: Option<DisconnectReason>) {
        let Some(link) = self.device.as_deref() else {
            return;
        };
        let disconnected = change == ConnectivityChange::Disconnected;
        let event = ConnectivityEvent {
            device: link.device.to_string(),
            event: change,
            ts: now_ms(),
            client_id: self.client_id.to_string(),
            address: link.address.to_string(),
            protocol: protocol(self.version).to_owned(),
            reason,
            last_seen: disconnected.then_some(link.last_seen_ms),
        };
        let message = Message::new(
            self.tenant.clone(),
            ByteString::from(connectivity::topic(&link.device)),
            event.to_json().into(),
            QoS::AtLeastOnce,
            Origin::System,
        );
        self.broker.router.publish_in(&self.bus, Arc::new(message));
    }
}

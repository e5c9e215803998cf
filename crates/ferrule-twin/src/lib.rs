//! What a device is doing and what it is told, as services on the router.
//!
//! - [`twin`]: each device's reported and desired state and the delta
//!   between them, with versions, per-key update times and history.
//!   Reported state arrives as messages on `devices/{id}/state/reported`
//!   (MQTT or HTTP ingest) through the router's intake; desired state
//!   changes come from the API; changes go out as retained messages on
//!   `devices/{id}/state/desired` and `…/state/delta`, and as twin events
//!   on the internal topic `$ferrule/devices/{id}/twin`.
//! - [`commands`]: request/response commands with an outbox for offline
//!   devices, tracked pending → delivered → succeeded | failed | expired.
//! - [`connectivity`]: online state, last seen and connect/disconnect
//!   events, from the broker's messages on `$ferrule/devices/{id}/connectivity`.
//! - [`profiles`]: device profiles: JSON Schemas for telemetry and
//!   reported state (checked in the router's intake), retention, defaults.
//!
//! None of them calls the broker: they publish on and subscribe to the
//! router like any other component (DESIGN.md).

pub mod commands;
pub mod connectivity;
pub mod profiles;
pub mod retention;
pub mod topics;
pub mod twin;

/// The device services the API needs, started together by `serve`.
#[derive(Clone)]
pub struct DeviceServices {
    pub twins: twin::Twins,
    pub commands: commands::Commands,
    pub connectivity: connectivity::Connectivity,
    pub profiles: profiles::Profiles,
}

impl DeviceServices {
    /// Drops what the services hold in memory of a deleted device, or of
    /// every device of a deleted tenant (`None`); the stored rows go with
    /// the device in the metadata store.
    pub fn forget(&self, tenant: &ferrule_core::TenantId, device: Option<&ferrule_core::DeviceId>) {
        match device {
            Some(d) => self.twins.forget(tenant, d),
            None => self.twins.forget_tenant(tenant),
        }
        self.commands.forget(tenant, device);
    }
}

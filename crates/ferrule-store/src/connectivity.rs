//! The store of devices' connectivity: the last known online state of each
//! device, kept across restarts for the connectivity tracker.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};

use crate::Result;

/// What is known of a device's connections. Times are ms since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConnectivity {
    pub online: bool,
    pub last_seen: Option<i64>,
    pub connected_at: Option<i64>,
    pub disconnected_at: Option<i64>,
    pub client_id: Option<String>,
    pub client_address: Option<String>,
    /// `3.1.1` or `5.0`.
    pub protocol: Option<String>,
    /// The reason of the last disconnect (`DisconnectReason::as_str`).
    pub last_reason: Option<String>,
}

/// Devices' connectivity. Saving replaces a device's row.
#[async_trait]
pub trait ConnectivityStore: Send + Sync + 'static {
    /// Saves the devices' states in one transaction; devices that no longer
    /// exist are skipped (their state went with them).
    async fn save_connectivity(
        &self,
        states: Vec<(TenantId, DeviceId, DeviceConnectivity)>,
    ) -> Result<()>;
    /// Every stored state.
    async fn load_connectivity(&self) -> Result<Vec<(TenantId, DeviceId, DeviceConnectivity)>>;
}

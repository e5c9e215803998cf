//! Devices' online state, from the broker's connectivity events.
//! (Being built: see the connectivity work package.)

use std::collections::HashMap;
use std::sync::Arc;

use ferrule_core::{DeviceId, TenantId};
use parking_lot::RwLock;

/// Which devices are online now. Cheap to clone: clones share it.
#[derive(Clone, Default)]
pub struct Connectivity {
    /// Open connections per device.
    online: Arc<RwLock<HashMap<(TenantId, DeviceId), usize>>>,
}

impl Connectivity {
    /// Whether the device has an MQTT connection open now.
    pub fn is_online(&self, tenant: &TenantId, device: &DeviceId) -> bool {
        self.online
            .read()
            .get(&(tenant.clone(), device.clone()))
            .is_some_and(|n| *n > 0)
    }
}

//! Device attributes and profile defaults for rules that read them
//! (`attributes.x`, `defaults.x`), cached briefly: a rule on every message
//! of a device must not cost a store read per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrule_core::{DeviceId, TenantId};
use ferrule_store::{MetaStore, ProfileStore, StoreError};
use parking_lot::Mutex;
use serde_json::Value;

/// How long a device's attributes are reused before being read again.
const FRESH_FOR: Duration = Duration::from_secs(2);
/// Devices kept at most; the cache starts over when full.
const MAX_DEVICES: usize = 10_000;

/// A device's attributes and its profile's defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceContext {
    pub(crate) attributes: Arc<Value>,
    pub(crate) defaults: Arc<Value>,
}

pub(crate) struct ContextCache {
    meta: Arc<dyn MetaStore>,
    profiles: Arc<dyn ProfileStore>,
    devices: Mutex<HashMap<(TenantId, DeviceId), (Instant, DeviceContext)>>,
}

impl ContextCache {
    pub(crate) fn new(meta: Arc<dyn MetaStore>, profiles: Arc<dyn ProfileStore>) -> Self {
        Self {
            meta,
            profiles,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// The device's context; empty objects when the device is unknown.
    pub(crate) async fn get(&self, tenant: &TenantId, device: &str) -> DeviceContext {
        let Ok(device) = DeviceId::new(device) else {
            return DeviceContext::default();
        };
        let key = (tenant.clone(), device);
        if let Some((at, cx)) = self.devices.lock().get(&key)
            && at.elapsed() < FRESH_FOR
        {
            return cx.clone();
        }
        let cx = self.read(&key.0, &key.1).await.unwrap_or_else(|e| {
            tracing::debug!(tenant = %key.0, device = %key.1, error = %e, "rule context unavailable");
            DeviceContext::default()
        });
        let mut devices = self.devices.lock();
        if devices.len() >= MAX_DEVICES {
            devices.clear();
        }
        devices.insert(key, (Instant::now(), cx.clone()));
        cx
    }

    async fn read(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<DeviceContext, StoreError> {
        let d = match self.meta.get_device(tenant, device).await {
            Ok(d) => d,
            Err(StoreError::NotFound { .. }) => return Ok(DeviceContext::default()),
            Err(e) => return Err(e),
        };
        let defaults = match self.profiles.get_profile(tenant, &d.profile).await {
            Ok(p) => p.defaults,
            Err(StoreError::NotFound { .. }) => Value::Object(Default::default()),
            Err(e) => return Err(e),
        };
        Ok(DeviceContext {
            attributes: Arc::new(d.attributes),
            defaults: Arc::new(defaults),
        })
    }

    /// Forgets what is cached of a tenant's devices (changed or deleted).
    pub(crate) fn forget(&self, tenant: &TenantId, device: Option<&DeviceId>) {
        self.devices
            .lock()
            .retain(|(t, d), _| t != tenant || device.is_some_and(|x| x != d));
    }
}

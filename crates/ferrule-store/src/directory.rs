//! Which tenants and devices exist, in memory.
//!
//! Hot paths must know at once, without a store round trip, whether a device
//! or a tenant exists: the telemetry intake on every publish (a deleted
//! device's id must not gather data again before it is created anew, nor
//! may telemetry pile up under ids nobody created), and the broker's
//! authorisation (a deleted identity keeps no rights on a connection that is
//! still closing). [`Directory`] is loaded from the store at start and
//! changed together with it, one change at a time
//! ([`changing`](Directory::changing)).
//!
//! Its lock also orders work: what runs inside
//! [`with_device`](Directory::with_device) (queueing a device's telemetry)
//! and what runs inside a change (queueing the purge of a deleted device's
//! telemetry) never interleave, so every append is queued either before the
//! purge, and purged with it, or after it, for a device created anew.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ferrule_core::{DeviceId, Principal, PrincipalKind, TenantId};
use parking_lot::RwLock;

use crate::{MetaStore, PageRequest, Result};

/// Existing tenants and their devices. Cheap to clone: clones share it.
#[derive(Clone, Default)]
pub struct Directory {
    tenants: Arc<RwLock<HashMap<TenantId, HashSet<DeviceId>>>>,
    changes: Arc<tokio::sync::Mutex<()>>,
}

/// Held while a tenant or device is created or deleted in the store and
/// in the directory.
pub struct Changing<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

const PAGE: u32 = 1000;

impl Directory {
    /// Every tenant and device in the store (about 60 bytes of memory per
    /// device).
    pub async fn load(store: &dyn MetaStore) -> Result<Self> {
        let mut tenants: HashMap<TenantId, HashSet<DeviceId>> = HashMap::new();
        let mut page = PageRequest {
            limit: PAGE,
            after: None,
        };
        loop {
            let got = store.list_tenants(&page).await?;
            for t in got.items {
                tenants.insert(t.id, HashSet::new());
            }
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        for (tenant, devices) in &mut tenants {
            let mut page = PageRequest {
                limit: PAGE,
                after: None,
            };
            loop {
                let got = store.list_devices(tenant, &page).await?;
                devices.extend(got.items.into_iter().map(|d| d.id));
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(Self {
            tenants: Arc::new(RwLock::new(tenants)),
            changes: Arc::default(),
        })
    }

    /// Every tenant with its number of devices, in no order.
    pub fn device_counts(&self) -> Vec<(TenantId, usize)> {
        self.tenants
            .read()
            .iter()
            .map(|(t, d)| (t.clone(), d.len()))
            .collect()
    }

    /// The tenant's number of devices; `None` when no such tenant.
    pub fn device_count(&self, tenant: &TenantId) -> Option<usize> {
        self.tenants.read().get(tenant).map(HashSet::len)
    }

    pub fn has_device(&self, tenant: &TenantId, device: &DeviceId) -> bool {
        self.tenants
            .read()
            .get(tenant)
            .is_some_and(|d| d.contains(device))
    }

    /// Whether `who` still exists: its tenant, and for a device the device.
    /// (Users and API keys are checked where they authenticate.)
    pub fn may_act(&self, who: &Principal) -> bool {
        let tenants = self.tenants.read();
        let Some(devices) = tenants.get(&who.tenant) else {
            return false;
        };
        match &who.kind {
            PrincipalKind::Device { id } => devices.contains(id),
            _ => true,
        }
    }

    /// Runs `f` if the device exists, with no change to the directory
    /// meanwhile; `None` if it does not exist. `f` must not block.
    pub fn with_device<T>(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        let tenants = self.tenants.read();
        tenants
            .get(tenant)
            .is_some_and(|d| d.contains(device))
            .then(f)
    }

    /// Starts a change: creations and deletions of tenants and devices go
    /// one at a time, so that the directory follows the store exactly.
    pub async fn changing(&self) -> Changing<'_> {
        Changing {
            _guard: self.changes.lock().await,
        }
    }

    /// Adds a tenant just created in the store.
    pub fn add_tenant(&self, _: &Changing<'_>, tenant: &TenantId) {
        self.tenants.write().entry(tenant.clone()).or_default();
    }

    /// Adds a device just created in the store.
    pub fn add_device(&self, _: &Changing<'_>, tenant: &TenantId, device: &DeviceId) {
        self.tenants
            .write()
            .entry(tenant.clone())
            .or_default()
            .insert(device.clone());
    }

    /// Forgets a tenant and its devices, then runs `f` before any
    /// `with_device` call can start. `f` must not block.
    pub fn remove_tenant<T>(
        &self,
        _: &Changing<'_>,
        tenant: &TenantId,
        f: impl FnOnce() -> T,
    ) -> T {
        let mut tenants = self.tenants.write();
        tenants.remove(tenant);
        f()
    }

    /// Forgets a device, then runs `f` before any `with_device` call can
    /// start. `f` must not block.
    pub fn remove_device<T>(
        &self,
        _: &Changing<'_>,
        tenant: &TenantId,
        device: &DeviceId,
        f: impl FnOnce() -> T,
    ) -> T {
        let mut tenants = self.tenants.write();
        if let Some(devices) = tenants.get_mut(tenant) {
            devices.remove(device);
        }
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, device: Option<&str>) -> Principal {
        Principal {
            tenant: TenantId::new(tenant).unwrap(),
            kind: match device {
                Some(d) => PrincipalKind::Device {
                    id: DeviceId::new(d).unwrap(),
                },
                None => PrincipalKind::Anonymous,
            },
        }
    }

    #[tokio::test]
    async fn follows_creations_and_deletions() {
        let dir = Directory::default();
        let (t, d) = (TenantId::new("t").unwrap(), DeviceId::new("d").unwrap());
        assert!(!dir.may_act(&principal("t", None)));
        let change = dir.changing().await;
        dir.add_tenant(&change, &t);
        assert!(dir.may_act(&principal("t", None)));
        assert!(!dir.may_act(&principal("t", Some("d"))));
        dir.add_device(&change, &t, &d);
        assert!(dir.has_device(&t, &d));
        assert_eq!(dir.with_device(&t, &d, || 1), Some(1));
        assert_eq!(dir.remove_device(&change, &t, &d, || 7), 7);
        assert_eq!(dir.with_device(&t, &d, || 1), None);
        assert!(dir.may_act(&principal("t", None)));
        dir.add_device(&change, &t, &d);
        dir.remove_tenant(&change, &t, || ());
        assert!(!dir.has_device(&t, &d));
        assert!(!dir.may_act(&principal("t", None)));
    }
}

//! Device profiles: JSON Schemas for telemetry and reported state,
//! retention and defaults.
//!
//! [`Profiles`] is the one way profiles change: it compiles a profile's
//! schemas before the store saves it (a schema that does not compile is
//! refused with why), and keeps in memory, per tenant, the compiled
//! profiles that have a schema and which device is in which profile. The
//! [`ProfileGuard`] reads that on the router's intake, before any other
//! stage, and refuses what breaks a device's profile. The API tells it
//! when devices come, change profile and go.

mod guard;
mod observe;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use ferrule_core::{DeviceId, TenantId};
use ferrule_store::{DEFAULT_PROFILE, DeviceProfile, ProfileStore, StoreError};
use parking_lot::RwLock;

pub use guard::ProfileGuard;
pub use schema::Schema;

/// Largest JSON Schema a profile may hold, serialized.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Largest `defaults` object, serialized.
pub const MAX_DEFAULTS_BYTES: usize = 16 * 1024;

/// Why a profile could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// A field of the profile is not acceptable.
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    /// A field is larger than its bound.
    #[error("{field} is larger than {limit} bytes")]
    TooLarge { field: &'static str, limit: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("device profiles are not running")]
    Unavailable,
}

/// A profile's schemas, compiled.
pub struct CompiledProfile {
    pub name: Arc<str>,
    pub telemetry: Option<Schema>,
    pub state: Option<Schema>,
}

impl CompiledProfile {
    /// Compiles the schemas of `profile` and checks its bounds.
    pub fn compile(profile: &DeviceProfile) -> Result<Self, ProfileError> {
        let schema = |field: &'static str, v: &Option<serde_json::Value>| {
            let Some(v) = v else { return Ok(None) };
            if serialized_len(v) > MAX_SCHEMA_BYTES {
                return Err(ProfileError::TooLarge {
                    field,
                    limit: MAX_SCHEMA_BYTES,
                });
            }
            Schema::compile(v)
                .map(Some)
                .map_err(|why| ProfileError::Invalid { field, why })
        };
        if !profile.defaults.is_object() {
            return Err(ProfileError::Invalid {
                field: "defaults",
                why: "must be a JSON object".into(),
            });
        }
        if serialized_len(&profile.defaults) > MAX_DEFAULTS_BYTES {
            return Err(ProfileError::TooLarge {
                field: "defaults",
                limit: MAX_DEFAULTS_BYTES,
            });
        }
        Ok(CompiledProfile {
            name: profile.name.as_str().into(),
            telemetry: schema("telemetry_schema", &profile.telemetry_schema)?,
            state: schema("state_schema", &profile.state_schema)?,
        })
    }

    fn checks_anything(&self) -> bool {
        self.telemetry.is_some() || self.state.is_some()
    }
}

fn serialized_len(v: &serde_json::Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// One tenant's profiles as the guard needs them.
#[derive(Default)]
struct TenantProfiles {
    /// Devices not in `default`, with their profile's name.
    devices: HashMap<Arc<str>, Arc<str>>,
    /// Profiles with a schema; the others check nothing.
    compiled: HashMap<Arc<str>, Arc<CompiledProfile>>,
    /// Retention of profiles that set one.
    retention_days: HashMap<Arc<str>, u32>,
}

impl TenantProfiles {
    fn profile_of(&self, device: &str) -> &str {
        self.devices.get(device).map_or(DEFAULT_PROFILE, |p| p)
    }
}

/// The tenants' device profiles, compiled. Cheap to clone: clones share.
#[derive(Clone, Default)]
pub struct Profiles {
    /// `None` only in tests and before wiring: every change is then refused.
    store: Option<Arc<dyn ProfileStore>>,
    known: Arc<RwLock<HashMap<TenantId, TenantProfiles>>>,
    /// One change at a time, so memory follows the store's order.
    changing: Arc<tokio::sync::Mutex<()>>,
}

impl Profiles {
    /// Loads and compiles every saved profile and learns every device's
    /// profile. A stored schema that no longer compiles (a newer draft
    /// rule) is logged and left unchecked rather than stopping the start.
    pub async fn open(store: Arc<dyn ProfileStore>) -> Result<Self, ProfileError> {
        let profiles = Profiles {
            store: Some(store.clone()),
            ..Default::default()
        };
        for profile in store.all_profiles().await? {
            match CompiledProfile::compile(&profile) {
                Ok(compiled) => profiles.install(&profile, compiled),
                Err(e) => tracing::warn!(
                    tenant = %profile.tenant, profile = %profile.name, error = %e,
                    "a saved device profile does not compile; its schemas are not checked until it is saved again"
                ),
            }
        }
        let devices = store.devices_with_profiles().await?;
        let mut known = profiles.known.write();
        for (tenant, device, profile) in devices {
            known
                .entry(tenant)
                .or_default()
                .devices
                .insert(device.as_str().into(), profile.into());
        }
        drop(known);
        Ok(profiles)
    }

    /// Loads a tenant that came in whole (a tenant move) while the
    /// server runs: its profiles and which device uses which, as
    /// [`Self::open`] does for every tenant.
    pub async fn load_tenant(&self, tenant: &TenantId) -> Result<(), ProfileError> {
        let store = self.store()?.clone();
        let _one = self.changing.lock().await;
        for profile in store.all_profiles().await? {
            if &profile.tenant != tenant {
                continue;
            }
            match CompiledProfile::compile(&profile) {
                Ok(compiled) => self.install(&profile, compiled),
                Err(e) => tracing::warn!(
                    tenant = %profile.tenant, profile = %profile.name, error = %e,
                    "an imported device profile does not compile; its schemas are not checked until it is saved again"
                ),
            }
        }
        let devices = store.devices_with_profiles().await?;
        let mut known = self.known.write();
        for (t, device, profile) in devices {
            if &t == tenant {
                known
                    .entry(t)
                    .or_default()
                    .devices
                    .insert(device.as_str().into(), profile.into());
            }
        }
        Ok(())
    }

    /// The store, for reads.
    pub fn store(&self) -> Result<&Arc<dyn ProfileStore>, ProfileError> {
        self.store.as_ref().ok_or(ProfileError::Unavailable)
    }

    /// Saves a new profile once its schemas compile.
    pub async fn create(&self, profile: &DeviceProfile) -> Result<DeviceProfile, ProfileError> {
        let compiled = CompiledProfile::compile(profile)?;
        let _one = self.changing.lock().await;
        let saved = self.store()?.create_profile(profile).await?;
        self.install(&saved, compiled);
        Ok(saved)
    }

    /// Replaces a profile once its schemas compile; the new schemas apply
    /// to the next message.
    pub async fn replace(&self, profile: &DeviceProfile) -> Result<DeviceProfile, ProfileError> {
        let compiled = CompiledProfile::compile(profile)?;
        let _one = self.changing.lock().await;
        let saved = self.store()?.update_profile(profile).await?;
        self.install(&saved, compiled);
        Ok(saved)
    }

    /// Deletes a profile no device uses (`default`: forgets what was saved).
    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), ProfileError> {
        let _one = self.changing.lock().await;
        self.store()?.delete_profile(tenant, name).await?;
        if let Some(t) = self.known.write().get_mut(tenant) {
            t.compiled.remove(name);
            t.retention_days.remove(name);
        }
        Ok(())
    }

    /// Whether the tenant has this profile (`default` always).
    pub async fn exists(&self, tenant: &TenantId, name: &str) -> Result<bool, ProfileError> {
        if name == DEFAULT_PROFILE {
            return Ok(true);
        }
        match self.store()?.get_profile(tenant, name).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A device was created in, or moved to, `profile`.
    pub fn device_in(&self, tenant: &TenantId, device: &DeviceId, profile: &str) {
        let mut known = self.known.write();
        if profile == DEFAULT_PROFILE {
            if let Some(t) = known.get_mut(tenant) {
                t.devices.remove(device.as_str());
            }
        } else {
            known
                .entry(tenant.clone())
                .or_default()
                .devices
                .insert(device.as_str().into(), profile.into());
        }
    }

    /// A device was deleted.
    pub fn device_gone(&self, tenant: &TenantId, device: &DeviceId) {
        if let Some(t) = self.known.write().get_mut(tenant) {
            t.devices.remove(device.as_str());
        }
    }

    /// A tenant was deleted.
    pub fn tenant_gone(&self, tenant: &TenantId) {
        self.known.write().remove(tenant);
    }

    /// How many days the device's telemetry is kept by its profile, if
    /// the profile says.
    pub fn retention_days(&self, tenant: &TenantId, device: &str) -> Option<u32> {
        let known = self.known.read();
        let t = known.get(tenant)?;
        t.retention_days.get(t.profile_of(device)).copied()
    }

    /// The compiled profile of a device, when it checks anything.
    fn checking(&self, tenant: &TenantId, device: &str) -> Option<Arc<CompiledProfile>> {
        let known = self.known.read();
        let t = known.get(tenant)?;
        t.compiled.get(t.profile_of(device)).cloned()
    }

    fn install(&self, profile: &DeviceProfile, compiled: CompiledProfile) {
        let mut known = self.known.write();
        let t = known.entry(profile.tenant.clone()).or_default();
        let name: Arc<str> = profile.name.as_str().into();
        if compiled.checks_anything() {
            t.compiled.insert(name.clone(), Arc::new(compiled));
        } else {
            t.compiled.remove(&name);
        }
        match profile.retention_days {
            Some(days) => t.retention_days.insert(name, days),
            None => t.retention_days.remove(&name),
        };
    }
}

#[cfg(test)]
mod tests;

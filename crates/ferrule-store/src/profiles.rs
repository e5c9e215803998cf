//! Device profiles: what a kind of device sends (JSON Schemas for its
//! telemetry and reported state), how long its telemetry is kept, and
//! defaults that rules and dashboards read.
//!
//! The store keeps profiles as sent; compiling and checking the schemas is
//! `ferrule-twin`'s job. Every tenant has the profile [`DEFAULT_PROFILE`]
//! (devices start in it) without a row: reading it answers an empty one
//! until the tenant saves its own.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use jiff::Timestamp;
use serde::Serialize;

use crate::{Device, Page, PageRequest, Result};

/// The profile every tenant has, stored or not.
pub const DEFAULT_PROFILE: &str = "default";

/// A device profile as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceProfile {
    pub tenant: TenantId,
    /// A slug like device ids, unique in the tenant.
    pub name: String,
    pub description: String,
    /// JSON Schema of one telemetry record's key → value object.
    pub telemetry_schema: Option<serde_json::Value>,
    /// JSON Schema of a reported-state object as sent.
    pub state_schema: Option<serde_json::Value>,
    /// Days the telemetry of the profile's devices is kept; `None` follows
    /// the tenant's setting.
    pub retention_days: Option<u32>,
    /// A free JSON object.
    pub defaults: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl DeviceProfile {
    /// The implicit `default` profile of a tenant that has not saved one.
    pub fn implicit_default(tenant: &TenantId, since: Timestamp) -> Self {
        DeviceProfile {
            tenant: tenant.clone(),
            name: DEFAULT_PROFILE.into(),
            description: String::new(),
            telemetry_schema: None,
            state_schema: None,
            retention_days: None,
            defaults: serde_json::json!({}),
            created_at: since,
            updated_at: since,
        }
    }
}

/// Which devices a listing returns; every condition must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFilter {
    /// Label key, and the value it must have (`None`: any value).
    pub labels: Vec<(String, Option<String>)>,
    pub profile: Option<String>,
}

impl DeviceFilter {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.profile.is_none()
    }

    /// Whether `device` passes, judged in memory (the store's
    /// `list_devices_matching` judges the same in its query).
    pub fn matches(&self, device: &crate::Device) -> bool {
        let labels = device.attributes.get("labels");
        self.profile.as_ref().is_none_or(|p| *p == device.profile)
            && self.labels.iter().all(
                |(key, want)| match (labels.and_then(|l| l.get(key)), want) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(have), Some(want)) => have.as_str() == Some(want.as_str()),
                },
            )
    }
}

/// Device profiles, and the device queries that involve them.
///
/// Like every store trait, each call takes the tenant, and another
/// tenant's profile is [`crate::StoreError::NotFound`] exactly as a missing one.
#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// [`crate::StoreError::Conflict`] when the name is taken (`default`
    /// included once saved).
    async fn create_profile(&self, profile: &DeviceProfile) -> Result<DeviceProfile>;
    /// `default` always answers, stored or implicit.
    async fn get_profile(&self, tenant: &TenantId, name: &str) -> Result<DeviceProfile>;
    /// By name, the implicit `default` included.
    async fn list_profiles(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DeviceProfile>>;
    /// Replaces every field but `created_at`; saving `default` creates its
    /// row when there is none.
    async fn update_profile(&self, profile: &DeviceProfile) -> Result<DeviceProfile>;
    /// [`crate::StoreError::Refused`] while devices use it. Deleting
    /// `default` forgets what was saved: it is implicit (empty) again, so
    /// its devices are left as they are.
    async fn delete_profile(&self, tenant: &TenantId, name: &str) -> Result<()>;
    /// Every saved profile of every tenant, to compile at start.
    async fn all_profiles(&self) -> Result<Vec<DeviceProfile>>;
    /// Every device not in `default`, with its profile, to know at start.
    async fn devices_with_profiles(&self) -> Result<Vec<(TenantId, DeviceId, String)>>;
    /// A page of the tenant's devices that match `filter`, in id order:
    /// the filter is applied before paging, so pages stay full.
    async fn list_devices_matching(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> Result<Page<Device>>;
}

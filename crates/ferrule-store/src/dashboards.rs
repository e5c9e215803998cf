//! Storage of tenants' dashboards: their widgets, version and share link.

use async_trait::async_trait;
use ferrule_core::TenantId;
use serde_json::Value;

use crate::{Page, PageRequest, Result};

/// A dashboard as stored. The widgets are kept as the API validated them.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardRecord {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub description: String,
    /// The widgets as a JSON array.
    pub widgets: Value,
    /// 1 when created; every change of name, description or widgets adds 1.
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When its current share link was made; `None` when not shared.
    pub shared_at: Option<i64>,
}

#[async_trait]
pub trait DashboardStore: Send + Sync + 'static {
    /// Inserts a new dashboard; `StoreError::Conflict` when the id is
    /// taken, `NotFound` when the tenant is gone.
    async fn create_dashboard(&self, dashboard: &DashboardRecord) -> Result<()>;
    /// Replaces name, description and widgets if the stored version is
    /// `expected_version` (`Conflict` otherwise, `NotFound` when gone);
    /// the share link is kept.
    async fn update_dashboard(
        &self,
        dashboard: &DashboardRecord,
        expected_version: u64,
    ) -> Result<()>;
    async fn get_dashboard(&self, tenant: &TenantId, id: &str) -> Result<DashboardRecord>;
    /// A tenant's dashboards by id.
    async fn list_dashboards(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DashboardRecord>>;
    /// Deletes a dashboard, and with it its share link.
    async fn delete_dashboard(&self, tenant: &TenantId, id: &str) -> Result<()>;
    /// Sets the share link (the SHA-256 of its token, made at `at`),
    /// replacing any earlier one, or revokes it (`None`).
    async fn set_dashboard_share(
        &self,
        tenant: &TenantId,
        id: &str,
        share: Option<(&str, i64)>,
    ) -> Result<()>;
    /// The dashboard a share token's hash opens; `NotFound` when none
    /// (never shared, revoked, or deleted).
    async fn shared_dashboard(&self, share_hash: &str) -> Result<DashboardRecord>;
}

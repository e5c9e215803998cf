//! Storage of tenants' rules: their SQL, actions and version.

use async_trait::async_trait;
use ferrule_core::TenantId;
use serde_json::Value;

use crate::{Page, PageRequest, Result};

/// A rule as stored. The SQL and actions are kept as the user wrote them;
/// the rules engine compiles them (and refused them at save time if they
/// did not compile).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRecord {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    pub description: String,
    pub sql: String,
    /// The actions as a JSON array.
    pub actions: Value,
    pub enabled: bool,
    /// 1 when created; every change adds 1.
    pub version: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait RuleStore: Send + Sync + 'static {
    /// Inserts a new rule; `StoreError::Conflict` when the id is taken,
    /// `NotFound` when the tenant is gone.
    async fn create_rule(&self, rule: &RuleRecord) -> Result<()>;
    /// Replaces a rule if its stored version is `expected_version`
    /// (`StoreError::Conflict` otherwise, `NotFound` when it is gone).
    async fn update_rule(&self, rule: &RuleRecord, expected_version: u64) -> Result<()>;
    async fn get_rule(&self, tenant: &TenantId, id: &str) -> Result<RuleRecord>;
    /// A tenant's rules by id.
    async fn list_rules(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<RuleRecord>>;
    /// Deletes a rule and its dead letters; `NotFound` when it is gone.
    async fn delete_rule(&self, tenant: &TenantId, id: &str) -> Result<()>;
    /// Every rule of every tenant, for the engine's start.
    async fn all_rules(&self) -> Result<Vec<RuleRecord>>;
}

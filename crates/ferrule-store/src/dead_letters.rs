//! Webhook calls that failed after their last retry, kept so that users
//! see them and can send them again.

use async_trait::async_trait;
use ferrule_core::TenantId;
use serde_json::Value;

use crate::{Page, PageRequest, Result};

/// A webhook call that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub tenant: TenantId,
    /// Assigned by the store.
    pub id: u64,
    pub rule: String,
    pub rule_version: u64,
    /// The action's index in the rule's list.
    pub action: u32,
    /// The request as it would be sent again (method, url, headers, body).
    pub request: Value,
    /// The last attempt's error.
    pub error: String,
    pub attempts: u32,
    pub created_at: i64,
    /// When a replay succeeded.
    pub replayed_at: Option<i64>,
}

#[async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Stores a dead letter and returns its id; a letter whose rule is gone
    /// is dropped (`Ok(None)`).
    async fn add_dead_letter(&self, letter: &DeadLetter) -> Result<Option<u64>>;
    async fn get_dead_letter(&self, tenant: &TenantId, id: u64) -> Result<DeadLetter>;
    /// A rule's dead letters, newest first.
    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        rule: &str,
        page: &PageRequest,
    ) -> Result<Page<DeadLetter>>;
    /// Records a replay: success sets `replayed_at`; failure updates the
    /// error and adds the attempts.
    async fn record_replay(
        &self,
        tenant: &TenantId,
        id: u64,
        outcome: std::result::Result<i64, (String, u32)>,
    ) -> Result<()>;
    /// Deletes one dead letter.
    async fn delete_dead_letter(&self, tenant: &TenantId, id: u64) -> Result<()>;
}

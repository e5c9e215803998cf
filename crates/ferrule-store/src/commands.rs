//! Storage of commands sent to devices: the outbox and their outcomes.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use serde_json::Value;

use crate::{Page, PageRequest, Result};

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandState {
    /// In the outbox: the device has not been sent it yet.
    Pending,
    /// Sent to the device; no reply yet.
    Delivered,
    Succeeded,
    Failed,
    /// Its time ran out before a reply.
    Expired,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => CommandState::Pending,
            "delivered" => CommandState::Delivered,
            "succeeded" => CommandState::Succeeded,
            "failed" => CommandState::Failed,
            "expired" => CommandState::Expired,
            _ => return None,
        })
    }

    /// Succeeded, failed or expired: nothing more happens to it.
    pub fn is_final(self) -> bool {
        !matches!(self, CommandState::Pending | CommandState::Delivered)
    }
}

/// A command as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub id: String,
    /// Sending order (increasing across the instance).
    pub seq: u64,
    pub name: String,
    pub params: Value,
    pub state: CommandState,
    /// Who sent it: `user:ID`, `key:ID`, `rule:ID`.
    pub requested_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub delivered_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The device's reply (succeeded), or what it sent (failed).
    pub response: Option<Value>,
    pub error: Option<String>,
}

#[async_trait]
pub trait CommandStore: Send + Sync + 'static {
    /// Inserts or updates commands in one transaction; a command whose
    /// device no longer exists is skipped.
    async fn save_commands(&self, commands: Vec<CommandRecord>) -> Result<()>;
    async fn get_command(&self, tenant: &TenantId, id: &str) -> Result<Option<CommandRecord>>;
    /// A device's commands, newest first (`page.after`: the opaque cursor
    /// of the previous page's `next`).
    async fn list_commands(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        state: Option<CommandState>,
        page: &PageRequest,
    ) -> Result<Page<CommandRecord>>;
    /// Every pending or delivered command, oldest first (start-up).
    async fn open_commands(&self) -> Result<Vec<CommandRecord>>;
    /// The highest `seq` ever given, so numbering goes on after a restart.
    async fn last_command_seq(&self) -> Result<u64>;
    /// Drops the tenant's finished commands finished before `before` (ms).
    async fn prune_commands(&self, tenant: &TenantId, before: i64) -> Result<u64>;
}

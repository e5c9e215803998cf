//! Storage of device twins and their history.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use serde_json::{Map, Value};

use crate::{Page, Result};

/// A device's twin as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinRecord {
    pub reported: Map<String, Value>,
    /// The shape of `reported`, each leaf the time (ms) it last changed.
    pub reported_meta: Map<String, Value>,
    pub reported_version: u64,
    pub desired: Map<String, Value>,
    pub desired_meta: Map<String, Value>,
    pub desired_version: u64,
    /// Moves with every change of either side.
    pub version: u64,
    pub updated_at: i64,
}

/// Which side of the twin a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwinSection {
    Reported,
    Desired,
}

impl TwinSection {
    pub fn as_str(self) -> &'static str {
        match self {
            TwinSection::Reported => "reported",
            TwinSection::Desired => "desired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reported" => Some(TwinSection::Reported),
            "desired" => Some(TwinSection::Desired),
            _ => None,
        }
    }
}

/// One change of a twin, as kept in its history.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinChange {
    /// The twin's version after the change.
    pub version: u64,
    pub ts: i64,
    pub section: TwinSection,
    /// Who: `device:ID`, `user:ID`, `key:ID`.
    pub actor: String,
    /// The merge patch as applied.
    pub patch: Value,
}

/// A twin to write with the changes that led to it.
#[derive(Debug, Clone)]
pub struct TwinWrite {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub twin: TwinRecord,
    pub changes: Vec<TwinChange>,
}

/// Which history to read: changes in `[from, to)` by time, after version
/// `after` (the page cursor), oldest first.
#[derive(Debug, Clone)]
pub struct TwinHistoryQuery {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub from: i64,
    pub to: i64,
    pub section: Option<TwinSection>,
    pub after: Option<u64>,
    pub limit: u32,
}

#[async_trait]
pub trait TwinStore: Send + Sync + 'static {
    /// The device's twin, if it ever had one.
    async fn load_twin(&self, tenant: &TenantId, device: &DeviceId) -> Result<Option<TwinRecord>>;
    /// The stored size of every twin's reported and desired documents, for
    /// the bounds checked before a change is accepted.
    async fn twin_sizes(&self) -> Result<Vec<(TenantId, DeviceId, usize, usize)>>;
    /// Writes twins and their history in one transaction. A twin whose
    /// device no longer exists is skipped (its deletion won).
    async fn save_twins(&self, writes: Vec<TwinWrite>) -> Result<()>;
    async fn twin_history(&self, query: TwinHistoryQuery) -> Result<Page<TwinChange>>;
    /// Drops the tenant's history older than `before` (ms); how many went.
    async fn prune_twin_history(&self, tenant: &TenantId, before: i64) -> Result<u64>;
}

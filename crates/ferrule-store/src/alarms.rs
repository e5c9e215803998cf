//! Storage of alarms: raised by rules (or the API), acknowledged and
//! cleared by users, kept afterwards as history.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use serde_json::Value;

use crate::{Page, PageRequest, Result};

/// How bad an alarm is, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
    Indeterminate,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
        Severity::Indeterminate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Indeterminate => "indeterminate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where an alarm is in its life: active → acknowledged → cleared (an
/// active alarm may be cleared without acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    Active,
    Acknowledged,
    Cleared,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Active => "active",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Cleared => "cleared",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => AlarmState::Active,
            "acknowledged" => AlarmState::Acknowledged,
            "cleared" => AlarmState::Cleared,
            _ => return None,
        })
    }
}

/// An alarm as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    pub tenant: TenantId,
    /// Assigned by the store.
    pub id: u64,
    pub device: Option<DeviceId>,
    pub alarm_type: String,
    pub severity: Severity,
    pub state: AlarmState,
    pub details: Value,
    pub count: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// Who raised it: `rule:ID`, `user:EMAIL`, `key:ID`.
    pub originator: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub cleared_by: Option<String>,
    pub cleared_at: Option<i64>,
}

/// Which alarms a listing returns; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmFilter {
    pub device: Option<DeviceId>,
    pub alarm_type: Option<String>,
    pub severity: Option<Severity>,
    pub state: Option<AlarmState>,
    /// `last_seen` at or after (ms).
    pub from: Option<i64>,
    /// `last_seen` before (ms).
    pub to: Option<i64>,
}

#[async_trait]
pub trait AlarmStore: Send + Sync + 'static {
    /// Inserts a new alarm (`id` 0; returns the id the store gives it) or
    /// updates an existing one by id (returns its id); an alarm whose device
    /// (or, updated, whose row) is gone is dropped (`Ok(None)`). Inserting a
    /// second open alarm of the same (tenant, device, type) is
    /// [`StoreError::Conflict`](crate::StoreError::Conflict).
    async fn save_alarm(&self, alarm: &AlarmRecord) -> Result<Option<u64>>;
    async fn get_alarm(&self, tenant: &TenantId, id: u64) -> Result<AlarmRecord>;
    /// The open (not cleared) alarm of a device and type, if any.
    async fn open_alarm(
        &self,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        alarm_type: &str,
    ) -> Result<Option<AlarmRecord>>;
    /// How many alarms of the tenant are open (active or acknowledged): the
    /// service bounds it.
    async fn count_open_alarms(&self, tenant: &TenantId) -> Result<u64>;
    /// Whether the device exists, so that a dry run can say what raising an
    /// alarm on it would do without writing.
    async fn alarm_device_exists(&self, tenant: &TenantId, device: &DeviceId) -> Result<bool>;
    /// A tenant's alarms, most recently seen first (then newest id first).
    /// The page cursor is opaque: `last_seen:id` of the last alarm returned.
    async fn list_alarms(
        &self,
        tenant: &TenantId,
        filter: &AlarmFilter,
        page: &PageRequest,
    ) -> Result<Page<AlarmRecord>>;
}

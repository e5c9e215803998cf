//! Observability events of device profiles. Metric names live here only.

use ferrule_core::TenantId;
use metrics::counter;

pub const SCHEMA_REFUSALS: &str = "ferrule_profile_schema_refusals_total";

/// What a schema refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    Telemetry,
    State,
}

impl Checked {
    pub fn label(self) -> &'static str {
        match self {
            Checked::Telemetry => "telemetry",
            Checked::State => "state",
        }
    }
}

/// A device's message broke its profile's schema.
pub struct SchemaRefused<'a> {
    pub tenant: &'a TenantId,
    pub device: &'a str,
    pub profile: &'a str,
    pub kind: Checked,
    pub why: &'a str,
}

impl SchemaRefused<'_> {
    pub fn emit(self) {
        counter!(
            SCHEMA_REFUSALS,
            "tenant" => self.tenant.to_string(),
            "profile" => self.profile.to_owned(),
            "kind" => self.kind.label(),
        )
        .increment(1);
        tracing::debug!(
            tenant = %self.tenant, device = self.device, profile = self.profile,
            kind = self.kind.label(), why = self.why,
            "refused a message that breaks its device profile"
        );
    }
}

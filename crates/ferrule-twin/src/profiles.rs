//! Device profiles: JSON Schemas for telemetry and reported state,
//! retention and defaults. (Being built: see the profiles work package.)

/// The tenants' device profiles, compiled. Cheap to clone.
#[derive(Clone, Default)]
pub struct Profiles {}

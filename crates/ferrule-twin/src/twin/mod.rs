//! Device twins. (Being built.)

/// The twin service's handle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Twins {}

//! Commands and their outbox. (Being built.)

/// The command tracker's handle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Commands {}

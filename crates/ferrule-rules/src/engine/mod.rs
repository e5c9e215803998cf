//! The rules engine (foundation placeholder; built next).

/// The rules of every tenant, running on the router.
#[derive(Clone)]
pub struct Rules {}

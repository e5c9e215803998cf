//! The storage error type, shared by all backends.

/// What went wrong in a store call. Backends map their own errors into these so
/// callers (HTTP, MQTT) never see a backend's vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object in this tenant. Deliberately the same whether the object
    /// is missing or belongs to another tenant.
    #[error("{kind} not found")]
    NotFound { kind: &'static str },
    /// A unique constraint: the id or email is taken.
    #[error("{kind} already exists")]
    Conflict { kind: &'static str },
    /// The change needs a role at least as high as the user's current one.
    #[error("the user's role is above the role making the change")]
    Outranked,
    /// The request contradicts a rule the store keeps (e.g. deleting `default`).
    #[error("{0}")]
    Refused(String),
    /// The data directory was written by a newer Ferrule.
    #[error(
        "the data directory has schema version {found}, newer than this binary's {supported}: \
         run a newer ferrule, or restore a backup into an empty data directory"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    /// Password hashing is at its bound (`auth.hash_queue`): retry shortly.
    #[error("password hashing is busy; retry shortly")]
    Busy,
    /// The backend failed (I/O, corruption, connection).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Results of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

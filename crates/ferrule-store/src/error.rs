//! The storage error type, shared by all backends.

/// A backend's own error, kept whole as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The backend failed (I/O, corruption, connection); its error is kept
    /// as the source.
    #[error("storage backend: {0}")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// The backend failed while doing `what`.
    pub fn backend(what: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        StoreError::Backend(Box::new(BackendFailure {
            what: what.into(),
            cause: cause.into(),
        }))
    }

    /// Stored data that cannot be what it is.
    pub fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Backend(what.into().into())
    }

    /// Whether the backend refused a write for breaking a foreign key (the
    /// row it points to is gone).
    pub(crate) fn is_foreign_key_violation(&self) -> bool {
        let StoreError::Backend(cause) = self else {
            return false;
        };
        matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
        )
    }
}

/// A backend's error with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
struct BackendFailure {
    what: String,
    #[source]
    cause: BoxError,
}

/// Results of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

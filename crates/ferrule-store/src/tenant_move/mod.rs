//! Tenant moves: one tenant's data taken out of an instance and put into
//! another, running or stopped, so its devices reconnect there with the
//! tokens they already hold.
//!
//! - [`extract`] turns snapshot copies of `meta.db` and `telemetry.db` into
//!   files that hold one tenant and nothing else: every table with a
//!   `tenant` column is filtered, instance-wide rows (login sessions, admin
//!   users and keys, pending deletions, other tenants) are dropped, and the
//!   files are vacuumed so that freed pages of other tenants do not travel
//!   with them. A table the extract does not know is refused rather than
//!   copied whole: a new table must be classified here.
//! - [`import`] puts such files into an open store: the metadata in one
//!   transaction (ids and credential hashes kept), the telemetry in one
//!   writer transaction (series renumbered so they cannot collide with the
//!   target's). It refuses a tenant id that exists on the target unless the
//!   tenant is renamed (`as`), an email or secret already registered there,
//!   and an archive from a newer schema. A refusal, or a failure half way,
//!   leaves the target as it was.
//!
//! The archive that carries the two files is the backup container (scope
//! `{"tenant": ID}`); the server's caches are refreshed by the caller
//! (`ferrule-http`'s tenant import), since the store knows none of them.

mod archive;
mod extract;
mod import;

use std::collections::BTreeMap;

use ferrule_core::DeviceId;
use serde::Serialize;

pub use archive::{unpack_archive, write_archive};
pub(crate) use extract::{columns, tables};
pub use extract::{extract_meta, extract_telemetry, snapshot_database};
pub use import::{TenantImport, archive_tenant, import_tenant};

use crate::StoreError;
use crate::telemetry::TelemetryError;

/// Why a tenant could not be extracted or imported. Each names what is
/// wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(
        "tenant `{0}` already exists on this instance: import it under another id with \
         `--as NEW_ID` (API: `?as=NEW_ID`), or delete the tenant here first"
    )]
    TenantExists(String),
    #[error(
        "tenant `{0}` does not exist on this instance: check the id with `GET /api/v1/tenants`"
    )]
    NoSuchTenant(String),
    #[error(
        "tenant `{0}` is being deleted; wait until the deletion finishes, then export another tenant"
    )]
    TenantBeingDeleted(String),
    #[error(
        "the user {0} already exists on this instance (an email is unique across tenants): \
         delete or rename that user here, or move the tenant to another instance"
    )]
    EmailTaken(String),
    #[error(
        "device `{0}`'s access token is already registered on this instance (a token names one \
         device on an instance): delete the tenant or device that holds it here, or move the \
         tenant to another instance"
    )]
    TokenTaken(String),
    #[error(
        "{0} already exists on this instance, so the archive cannot be imported twice: delete \
         the tenant that holds it here, or move the tenant to another instance"
    )]
    Taken(String),
    #[error("the tenant archive is not usable: {0}")]
    Invalid(String),
    #[error(transparent)]
    Archive(#[from] crate::backup::archive::ArchiveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

impl From<rusqlite::Error> for MoveError {
    fn from(e: rusqlite::Error) -> Self {
        MoveError::Store(e.into())
    }
}

/// What an import brought in, for the caller's answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Moved {
    /// The tenant's id in the archive.
    pub from: String,
    /// Its id here.
    pub tenant: String,
    /// Metadata rows by table (`devices`, `rules`, `dashboards`, …).
    pub rows: BTreeMap<String, u64>,
    /// The tenant's devices, for the caches that list them.
    #[serde(skip)]
    pub devices: Vec<DeviceId>,
    /// Telemetry series, points (sealed and recent) and events.
    pub series: u64,
    pub points: u64,
    pub events: u64,
}

#[cfg(test)]
mod tests;

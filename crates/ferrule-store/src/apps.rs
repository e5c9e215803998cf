//! Storage of tenants' custom apps: static bundles of files, each with its
//! own API key.

use async_trait::async_trait;
use ferrule_core::TenantId;

use crate::{Page, PageRequest, Result};

/// A custom app as stored (without its files).
#[derive(Debug, Clone, PartialEq)]
pub struct AppRecord {
    pub tenant: TenantId,
    pub id: String,
    pub name: String,
    /// The app's API key (see `api_keys`).
    pub key_id: String,
    /// That key's secret, handed to the app's pages by `ferrule.json`.
    pub key_secret: String,
    /// How many files its bundle holds, and their total size.
    pub files: u64,
    pub bytes: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One file of a bundle: its path below the app's root (checked by the
/// API: relative, `/`-separated, no `.` or `..`), and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct AppFile {
    pub path: String,
    pub body: Vec<u8>,
}

#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Inserts an app with its files, all or nothing; `Conflict` when the
    /// id is taken, `NotFound` when the tenant is gone.
    async fn create_app(&self, app: &AppRecord, files: Vec<AppFile>) -> Result<()>;
    /// Replaces an app's files (and its `files`, `bytes`, `updated_at`),
    /// all or nothing; `NotFound` when gone.
    async fn replace_app_files(&self, app: &AppRecord, files: Vec<AppFile>) -> Result<()>;
    async fn get_app(&self, tenant: &TenantId, id: &str) -> Result<AppRecord>;
    /// A tenant's apps by id.
    async fn list_apps(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<AppRecord>>;
    /// Deletes an app and its files; returns it (its key is the caller's
    /// to revoke).
    async fn delete_app(&self, tenant: &TenantId, id: &str) -> Result<AppRecord>;
    /// One file of an app; `NotFound` when the app or the file is absent.
    async fn app_file(&self, tenant: &TenantId, id: &str, path: &str) -> Result<Vec<u8>>;
}

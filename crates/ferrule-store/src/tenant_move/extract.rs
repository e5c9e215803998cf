//! One tenant out of snapshot copies of the two databases (see the module
//! docs of [`super`]).

use std::collections::BTreeMap;
use std::path::Path;

use ferrule_core::TenantId;
use rusqlite::{Connection, OpenFlags, params};

use super::MoveError;

/// Copies a live database into `to` as of one instant, while its server
/// keeps writing: `VACUUM INTO` reads inside one transaction, so the copy
/// is consistent, and it holds no free pages.
pub fn snapshot_database(from: &Path, to: &Path) -> Result<(), MoveError> {
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = to
        .to_str()
        .ok_or_else(|| MoveError::Invalid(format!("{} is not UTF-8", to.display())))?;
    conn.execute("VACUUM INTO ?1", params![target])?;
    Ok(())
}

/// Tables of `conn`'s database `schema` (`main` or an attached one),
/// SQLite's own left out.
pub(crate) fn tables(conn: &Connection, schema: &str) -> rusqlite::Result<Vec<String>> {
    let mut q = conn.prepare(&format!(
        "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ))?;
    q.query_map([], |r| r.get(0))?.collect()
}

/// The columns of a table, in order.
pub(crate) fn columns(
    conn: &Connection,
    schema: &str,
    table: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut q = conn.prepare(&format!("PRAGMA {schema}.table_info(\"{table}\")"))?;
    q.query_map([], |r| r.get(1))?.collect()
}

/// Keeps only `tenant`'s rows in a copy of `meta.db` (changed in place),
/// then vacuums it; returns the rows kept by table.
pub fn extract_meta(path: &Path, tenant: &TenantId) -> Result<BTreeMap<String, u64>, MoveError> {
    let conn = Connection::open(path)?;
    // One self-contained file: no WAL beside it to carry old pages.
    conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA foreign_keys = OFF;")?;
    let t = tenant.as_str();
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = ?1)",
        [t],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(MoveError::NoSuchTenant(t.to_owned()));
    }
    let deleting: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pending_deletions WHERE tenant = ?1 AND device = '')",
        [t],
        |r| r.get(0),
    )?;
    if deleting {
        return Err(MoveError::TenantBeingDeleted(t.to_owned()));
    }
    let tx = conn.unchecked_transaction()?;
    let mut kept = BTreeMap::new();
    for table in tables(&tx, "main")? {
        let cols = columns(&tx, "main", &table)?;
        let delete = match table.as_str() {
            "tenants" => "DELETE FROM tenants WHERE id <> ?1".to_owned(),
            // Logins are of this instance; deletions in flight finish here.
            "sessions" | "pending_deletions" => format!("DELETE FROM \"{table}\" WHERE ?1 = ?1"),
            // Admins and admin keys govern the instance, not the tenant.
            "users" | "api_keys" => {
                format!("DELETE FROM \"{table}\" WHERE tenant <> ?1 OR role = 'admin'")
            }
            _ if cols.iter().any(|c| c == "tenant") => {
                format!("DELETE FROM \"{table}\" WHERE tenant <> ?1")
            }
            _ => {
                return Err(MoveError::Invalid(format!(
                    "table `{table}` of meta.db has no tenant column and tenant moves do not know \
                     it: classify it in ferrule-store's tenant_move::extract"
                )));
            }
        };
        tx.execute(&delete, [t])?;
        let n: i64 = tx.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })?;
        kept.insert(table, n as u64);
    }
    // Other tenants' counters of AUTOINCREMENT ids.
    tx.execute_batch("DELETE FROM sqlite_sequence;")
        .or_else(|e| match e {
            // No AUTOINCREMENT table: no sqlite_sequence either.
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => Ok(()),
            e => Err(e),
        })?;
    tx.commit()?;
    conn.execute_batch("VACUUM;")?;
    Ok(kept)
}

pub use crate::telemetry::embedded::extract_tenant as extract_telemetry;

//! A moved tenant's metadata into this store (see `crate::tenant_move`):
//! every row of the extract's tenant, with its ids and secret hashes, in
//! one transaction on the writer connection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferrule_core::{DeviceId, TenantId};
use rusqlite::{Connection, ErrorCode, params};

use super::{EmbeddedStore, lock, migrations};
use crate::StoreError;
use crate::tenant_move::MoveError;

/// Tables whose rows stay on their instance (logins, deletions in flight).
const LOCAL_TABLES: &[&str] = &["sessions", "pending_deletions"];

/// The tenant an extract holds. Brings the extract's schema up to this
/// binary's first (the file is the importer's own copy); refuses one
/// from a newer binary, and a file that is not one tenant's extract.
pub fn extract_tenant_id(path: &Path) -> Result<TenantId, MoveError> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = DELETE;")?;
    migrations::migrate(&mut conn)?;
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM tenants")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let [id] = ids.as_slice() else {
        return Err(MoveError::Invalid(format!(
            "meta.db holds {} tenants, where a tenant archive holds one: make it with \
             `ferrule backup --tenant ID`",
            ids.len()
        )));
    };
    TenantId::new(id).map_err(|e| MoveError::Invalid(format!("tenant id {id:?}: {e}")))
}

impl EmbeddedStore {
    /// Imports the tenant of the extract at `source` under `to`; with
    /// `commit` false, only checks that it would succeed (then nothing is
    /// written). Returns the rows brought in by table, and the devices.
    pub async fn import_tenant(
        &self,
        source: PathBuf,
        to: TenantId,
        commit: bool,
    ) -> Result<(BTreeMap<String, u64>, Vec<DeviceId>), MoveError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let from = extract_tenant_id(&source)?;
            let conn = lock(&inner.writer);
            let path = source
                .to_str()
                .ok_or_else(|| MoveError::Invalid("the extract's path is not UTF-8".into()))?;
            conn.execute("ATTACH DATABASE ?1 AS moved", params![path])?;
            let result = import_attached(&conn, &from, &to, commit);
            if let Err(e) = conn.execute_batch("DETACH DATABASE moved;") {
                tracing::warn!(error = %e, "detaching an imported tenant's metadata failed");
            }
            result
        })
        .await
        .map_err(|e| StoreError::backend("tenant import task failed", e))?
    }
}

fn import_attached(
    conn: &Connection,
    from: &TenantId,
    to: &TenantId,
    commit: bool,
) -> Result<(BTreeMap<String, u64>, Vec<DeviceId>), MoveError> {
    let tx = conn.unchecked_transaction()?;
    // Rows go in table by table; their references are checked at commit.
    tx.execute_batch("PRAGMA defer_foreign_keys = ON;")?;
    let taken: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM main.tenants WHERE id = ?1)
             OR EXISTS (SELECT 1 FROM main.pending_deletions WHERE tenant = ?1 AND device = '')",
        [to.as_str()],
        |r| r.get(0),
    )?;
    if taken {
        return Err(MoveError::TenantExists(to.to_string()));
    }
    let email: Option<String> = tx
        .query_row(
            "SELECT m.email FROM moved.users m JOIN main.users u ON u.email = m.email
             WHERE m.tenant = ?1 AND m.role <> 'admin' LIMIT 1",
            [from.as_str()],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(none_if_no_rows)?;
    if let Some(email) = email {
        return Err(MoveError::EmailTaken(email));
    }
    let device: Option<String> = tx
        .query_row(
            "SELECT m.device FROM moved.device_credentials m JOIN main.device_credentials c
                 ON c.secret_hash = m.secret_hash AND c.kind = 'token'
             WHERE m.tenant = ?1 AND m.kind = 'token' LIMIT 1",
            [from.as_str()],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(none_if_no_rows)?;
    if let Some(device) = device {
        return Err(MoveError::TokenTaken(device));
    }
    // Names come from this store's schema; the archive's only have to
    // match them (it may come from anywhere).
    let ours = crate::tenant_move::tables(&tx, "main")?;
    let theirs: Vec<String> = tx
        .prepare(
            "SELECT name FROM moved.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(odd) = theirs.iter().find(|t| !ours.contains(t)) {
        return Err(MoveError::Invalid(format!(
            "its meta.db has a table {odd:?} this version does not have"
        )));
    }
    refuse_unknown_roles(&tx, from, &theirs)?;
    let mut rows = BTreeMap::new();
    for table in ours {
        if LOCAL_TABLES.contains(&table.as_str()) || !theirs.contains(&table) {
            continue;
        }
        let here = crate::tenant_move::columns(&tx, "main", &table)?;
        let (insert, filter) = copy_statement(&tx, &table, &here)?;
        let sql = format!(
            "INSERT INTO main.\"{table}\" ({}) SELECT {} FROM moved.\"{table}\" WHERE {filter}",
            insert.0.join(", "),
            insert.1.join(", "),
        );
        let n = tx
            .execute(&sql, params![to.as_str(), from.as_str()])
            .map_err(|e| taken_or(e, &table))?;
        rows.insert(table, n as u64);
    }
    let devices = tx
        .prepare("SELECT id FROM main.devices WHERE tenant = ?1")?
        .query_map([to.as_str()], |r| r.get::<_, String>(0))?
        .map(|id| {
            let id = id?;
            DeviceId::new(&id).map_err(|e| MoveError::Invalid(format!("device id {id:?}: {e}")))
        })
        .collect::<Result<Vec<_>, MoveError>>()?;
    if commit {
        tx.commit().map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => MoveError::Invalid(format!(
                "its rows do not hold together ({e}); make it again with `ferrule backup --tenant`"
            )),
            _ => e.into(),
        })?;
    } else {
        // Checked now rather than at the commit that will not happen.
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken > 0 {
            return Err(MoveError::Invalid(format!(
                "{broken} of its rows point to rows it does not hold; make it again with \
                 `ferrule backup --tenant`"
            )));
        }
    }
    Ok((rows, devices))
}

/// A role this version does not know would be stored as it is and then
/// fail every read of that user or key (a listing answering 500): an
/// archive may come from anywhere, so it is refused by name instead.
fn refuse_unknown_roles(
    conn: &Connection,
    from: &TenantId,
    theirs: &[String],
) -> Result<(), MoveError> {
    let known = ferrule_core::Role::ALL
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    for table in ["users", "api_keys"] {
        if !theirs.iter().any(|t| t == table) {
            continue;
        }
        let odd: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT role FROM moved.\"{table}\" WHERE tenant = ?1 AND role NOT IN ({known}) LIMIT 1"
                ),
                [from.as_str()],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(none_if_no_rows)?;
        if let Some(role) = odd {
            return Err(MoveError::Invalid(format!(
                "its `{table}` hold the role {role:?}, which is none of admin, owner, editor or viewer"
            )));
        }
    }
    Ok(())
}

type Columns = (Vec<String>, Vec<String>);

/// The columns to insert and what to select for each (`?1`: the new
/// tenant id, `?2`: the archive's), and the filter on the archive's rows.
/// AUTOINCREMENT ids (alarms, dead letters) are left for this store to
/// number; every other id is kept.
fn copy_statement(
    conn: &Connection,
    table: &str,
    here: &[String],
) -> Result<(Columns, String), MoveError> {
    let there = crate::tenant_move::columns(conn, "moved", table)?;
    let renumbered: bool = conn.query_row(
        "SELECT sql LIKE '%AUTOINCREMENT%' FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )?;
    let mut insert = Vec::new();
    let mut select = Vec::new();
    for col in here {
        if renumbered && col == "id" {
            continue;
        }
        let value = if col == "tenant" || (table == "tenants" && col == "id") {
            "?1".to_owned()
        } else if table == "api_keys" && col == "created_by" {
            // A key made by someone who does not come along (an admin of
            // the old instance) keeps its own role, as keys from before
            // creators were recorded do, instead of counting as revoked.
            "CASE WHEN created_by IN (SELECT id FROM moved.users WHERE tenant = ?2 AND role <> 'admin')
                    OR created_by IN (SELECT id FROM moved.api_keys WHERE tenant = ?2 AND role <> 'admin')
                  THEN created_by END"
                .to_owned()
        } else if there.contains(col) {
            format!("\"{col}\"")
        } else {
            return Err(MoveError::Invalid(format!(
                "table `{table}` has no column `{col}` in the archive"
            )));
        };
        insert.push(format!("\"{col}\""));
        select.push(value);
    }
    let mut filter = if table == "tenants" {
        "id = ?2".to_owned()
    } else if there.iter().any(|c| c == "tenant") {
        "tenant = ?2".to_owned()
    } else {
        return Err(MoveError::Invalid(format!(
            "table `{table}` has no tenant column"
        )));
    };
    // An archive may come from anywhere: it never brings instance admins.
    if table == "users" || table == "api_keys" {
        filter.push_str(" AND role <> 'admin'");
    }
    Ok(((insert, select), filter))
}

fn none_if_no_rows<T>(e: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    }
}

/// A unique id or secret already here (imported twice under two names):
/// named, for the operator; other failures as they are.
fn taken_or(e: rusqlite::Error, table: &str) -> MoveError {
    if let rusqlite::Error::SqliteFailure(f, Some(message)) = &e
        && f.code == ErrorCode::ConstraintViolation
        && let Some(what) = message.strip_prefix("UNIQUE constraint failed: ")
    {
        return MoveError::Taken(format!("a row of `{table}` with the same {what}"));
    }
    e.into()
}

//! Versioned schema migrations for the embedded store.
//!
//! The schema version lives in SQLite's `user_version`. Opening applies every
//! migration above it in one transaction, so a newer binary upgrades an older
//! data directory in place; a version above [`SCHEMA_VERSION`] means a newer
//! binary wrote it, and we refuse rather than guess.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Migrations in order; migration `i` takes the schema to version `i + 1`.
/// Never edit a released migration: add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/embedded/0001_identity.sql"),
    include_str!("../../migrations/embedded/0002_devices_and_keys.sql"),
    include_str!("../../migrations/embedded/0003_acl_rules.sql"),
    include_str!("../../migrations/embedded/0004_mqtt_state.sql"),
    include_str!("../../migrations/embedded/0006_pending_deletions.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The schema version of an open database.
pub fn schema_version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let found = schema_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("migration {}: {e}", i + 1)))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    tracing::info!(
        from = found,
        to = SCHEMA_VERSION,
        "migrated metadata schema"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_from_empty_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn refuses_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match migrate(&mut conn) {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn upgrades_each_older_version_in_place() {
        for start in 0..SCHEMA_VERSION {
            let mut conn = Connection::open_in_memory().unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..start as usize] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", start).unwrap();
            tx.commit().unwrap();
            migrate(&mut conn).unwrap();
            assert_eq!(
                schema_version(&conn).unwrap(),
                SCHEMA_VERSION,
                "from {start}"
            );
        }
    }
}

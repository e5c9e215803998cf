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
    include_str!("../../migrations/embedded/0005_key_creators_and_tenant_fingerprints.sql"),
    include_str!("../../migrations/embedded/0006_pending_deletions.sql"),
    include_str!("../../migrations/embedded/0007_device_state.sql"),
    include_str!("../../migrations/embedded/0008_rules_and_alarms.sql"),
    include_str!("../../migrations/embedded/0009_dashboards.sql"),
    include_str!("../../migrations/embedded/0010_apps.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What the migrations above version `found` do, one line each, in the
/// order they would run (`ferrule check` shows them before an upgrade).
pub fn pending_migrations(found: u32) -> Vec<String> {
    MIGRATIONS
        .iter()
        .enumerate()
        .skip(found as usize)
        .map(|(i, sql)| format!("{}: {}", i + 1, summary(sql)))
        .collect()
}

/// The first sentence of a migration's leading comment.
fn summary(sql: &str) -> String {
    let comment = sql
        .lines()
        .map_while(|l| l.strip_prefix("--"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let first = match comment.find(". ") {
        Some(end) => &comment[..end],
        None => comment.trim_end_matches('.'),
    };
    let mut out: String = first.chars().take(100).collect();
    if out.len() < first.len() {
        out.push('…');
    }
    out
}

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
            .map_err(|e| StoreError::backend(format!("migration {}", i + 1), e))?;
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
    fn pending_migrations_name_what_they_do() {
        let all = pending_migrations(0);
        assert_eq!(all.len(), SCHEMA_VERSION as usize);
        assert_eq!(all[0], "1: Tenants, users and their login sessions");
        assert!(pending_migrations(SCHEMA_VERSION).is_empty());
        assert!(all.iter().all(|m| m.len() > 5));
    }

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
    fn version_5_keeps_old_keys_and_registrations() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..4] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        tx.execute_batch(
            "INSERT INTO tenants VALUES ('acme', 'Acme', 1);
             INSERT INTO tenants VALUES ('beta', 'Beta', 1);
             INSERT INTO devices VALUES ('acme', 'pump', 'pump', 'default', '{}', 1, 1, 1);
             INSERT INTO devices VALUES ('beta', 'pump', 'pump', 'default', '{}', 1, 1, 1);
             INSERT INTO device_credentials VALUES ('c1', 'acme', 'pump', 'x509', NULL, 'sha256:aa', 42, NULL);
             INSERT INTO device_credentials VALUES ('c2', 'acme', 'pump', 'token', 'tok', NULL, 43, NULL);
             INSERT INTO api_keys VALUES ('k1', 'acme', 'ci', 'owner', 'hash', 44, NULL, NULL);",
        )
        .unwrap();
        tx.commit().unwrap();
        // As the store opens it.
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        migrate(&mut conn).unwrap();
        // Old keys have no recorded creator: they keep their own role.
        let creator: Option<String> = conn
            .query_row("SELECT created_by FROM api_keys WHERE id = 'k1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(creator, None);
        // Old registrations were unique across the instance: they count as
        // claimed, so a later registration elsewhere cannot block them.
        let rows: Vec<(String, Option<i64>)> = conn
            .prepare("SELECT id, claimed_at FROM device_credentials ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [("c1".into(), Some(42)), ("c2".into(), None)]);
        // Unique per tenant now: another tenant may register the same one.
        conn.execute(
            "INSERT INTO device_credentials (id, tenant, device, kind, fingerprint, created_at)
             VALUES ('c3', 'beta', 'pump', 'x509', 'sha256:aa', 50)",
            [],
        )
        .unwrap();
        assert!(
            conn.execute(
                "INSERT INTO device_credentials (id, tenant, device, kind, fingerprint, created_at)
                 VALUES ('c4', 'acme', 'pump', 'x509', 'sha256:aa', 51)",
                [],
            )
            .is_err()
        );
        // The device's credentials still go with it.
        conn.execute_batch("DELETE FROM devices WHERE tenant = 'acme'")
            .unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM device_credentials", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
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

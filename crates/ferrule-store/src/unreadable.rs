//! Rows that cannot be read back, met while loading everything at start.
//!
//! A server loads every tenant's stored sessions, retained messages, rules,
//! profiles and open commands when it starts. One row it cannot decode — a
//! file edited by hand, damaged on disk, or brought in by a crafted tenant
//! archive — must not keep the server (every other tenant) from starting:
//! the row is left out of the load and stays in the store, with an error
//! naming it and a counter.

use metrics::counter;

/// `ferrule_store_unreadable_rows_total{table}`.
pub const UNREADABLE_ROWS: &str = "ferrule_store_unreadable_rows_total";

/// The row's value, or `None` after logging and counting why it could not
/// be read. `what` names the row for the operator (tenant, ids).
pub(crate) fn skip<T, E: std::fmt::Display>(
    table: &'static str,
    what: impl FnOnce() -> String,
    row: Result<T, E>,
) -> Option<T> {
    match row {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(table, row = %what(), error = %e, "a stored row cannot be read; left out of the load (fix or delete it)");
            counter!(UNREADABLE_ROWS, "table" => table).increment(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::embedded::EmbeddedStore;
    use crate::rules::RuleStore;
    use crate::{BrokerStateStore, MetaStore};
    use ferrule_core::TenantId;

    /// One tenant's undecodable rows (as a crafted tenant archive could
    /// bring) leave the load without them, and every other row loads.
    #[tokio::test]
    async fn start_up_loads_skip_a_row_they_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for t in ["good", "bad"] {
            store
                .create_tenant(&TenantId::new(t).unwrap(), t)
                .await
                .unwrap();
        }
        let conn = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
        conn.execute_batch(
            "INSERT INTO mqtt_sessions (tenant, owner, client_id, expires_at, expiry_secs, subscriptions, inbound_qos2)
                 VALUES ('good', 'd', 'c', 9999999999999, 3600, '[]', '[]'),
                        ('bad', 'd', 'c', 9999999999999, 3600, 'not json', '[]');
             INSERT INTO mqtt_retained (tenant, topic, payload, qos, properties, expires_at, origin_client, received_at)
                 VALUES ('good', 'a/b', x'01', 1, NULL, NULL, NULL, 0),
                        ('bad', 'a/b', x'01', 7, NULL, NULL, NULL, 0);
             INSERT INTO rules (tenant, id, name, description, sql, actions, enabled, version, created_at, updated_at)
                 VALUES ('good', 'r', 'R', '', 'SELECT * FROM ''a''', '[]', 1, 1, 0, 0),
                        ('bad', 'r', 'R', '', 'SELECT * FROM ''a''', '{not json', 1, 1, 0, 0);",
        )
        .unwrap();
        drop(conn);

        let sessions = store.load_sessions().await.unwrap();
        assert_eq!(
            sessions
                .iter()
                .map(|s| s.tenant.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
        let retained = store.load_retained().await.unwrap();
        assert_eq!(
            retained.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
        let rules = store.all_rules().await.unwrap();
        assert_eq!(
            rules.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
            ["good"]
        );
    }
}

//! [`RuleStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::TenantId;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::EmbeddedStore;
use super::meta::{conflict, found};
use crate::rules::{RuleRecord, RuleStore};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str =
    "tenant, id, name, description, sql, actions, enabled, version, created_at, updated_at";

type RawRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    bool,
    i64,
    i64,
    i64,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn record(row: RawRow) -> Result<RuleRecord> {
    let bad = |what: String| StoreError::backend("rule", what);
    let (tenant, id, name, description, sql, actions, enabled, version, created, updated) = row;
    Ok(RuleRecord {
        tenant: TenantId::new(tenant).map_err(|e| bad(e.to_string()))?,
        id,
        name,
        description,
        sql,
        actions: serde_json::from_str(&actions).map_err(|e| bad(e.to_string()))?,
        enabled,
        version: version as u64,
        created_at: created,
        updated_at: updated,
    })
}

fn get_rule(c: &Connection, tenant: &TenantId, id: &str) -> Result<RuleRecord> {
    let row = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM rules WHERE tenant = ?1 AND id = ?2"
        ))?
        .query_row(params![tenant.as_str(), id], raw)
        .optional()?;
    row.map(record)
        .transpose()?
        .ok_or(StoreError::NotFound { kind: "rule" })
}

#[async_trait]
impl RuleStore for EmbeddedStore {
    async fn create_rule(&self, rule: &RuleRecord) -> Result<()> {
        let r = rule.clone();
        self.write(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO rules ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ),
                params![
                    r.tenant.as_str(),
                    r.id,
                    r.name,
                    r.description,
                    r.sql,
                    r.actions.to_string(),
                    r.enabled,
                    r.version as i64,
                    r.created_at,
                    r.updated_at
                ],
            )
            .map_err(|e| match &e {
                // The tenant is gone (deleted meanwhile).
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound { kind: "tenant" }
                }
                _ => conflict("rule")(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn update_rule(&self, rule: &RuleRecord, expected_version: u64) -> Result<()> {
        let r = rule.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE rules SET name = ?3, description = ?4, sql = ?5, actions = ?6,
                    enabled = ?7, version = ?8, updated_at = ?9
                 WHERE tenant = ?1 AND id = ?2 AND version = ?10",
                params![
                    r.tenant.as_str(),
                    r.id,
                    r.name,
                    r.description,
                    r.sql,
                    r.actions.to_string(),
                    r.enabled,
                    r.version as i64,
                    r.updated_at,
                    expected_version as i64
                ],
            )?;
            if n == 0 {
                // Gone, or changed by someone else meanwhile.
                get_rule(tx, &r.tenant, &r.id)?;
                return Err(StoreError::Conflict { kind: "rule" });
            }
            Ok(())
        })
        .await
    }

    async fn get_rule(&self, tenant: &TenantId, id: &str) -> Result<RuleRecord> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| get_rule(c, &tenant, &id)).await
    }

    async fn list_rules(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<RuleRecord>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM rules WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(
                params![
                    tenant.as_str(),
                    page.after.as_deref().unwrap_or(""),
                    limit as i64 + 1
                ],
                raw,
            )?;
            let mut items = rows
                .map(|r| record(r?))
                .collect::<Result<Vec<RuleRecord>>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|r| r.id.clone())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_rule(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM rules WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            found(n, "rule")
        })
        .await
    }

    async fn all_rules(&self) -> Result<Vec<RuleRecord>> {
        self.read(|c| {
            let mut st =
                c.prepare_cached(&format!("SELECT {COLS} FROM rules ORDER BY tenant, id"))?;
            let rows = st.query_map([], raw)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                let what = format!("tenant {}, rule {}", row.0, row.1);
                if let Some(rule) = crate::unreadable::skip("rules", || what, record(row)) {
                    out.push(rule);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::MetaStore;
    use crate::embedded::tests::store_with_device;

    fn rule(tenant: &TenantId, id: &str) -> RuleRecord {
        RuleRecord {
            tenant: tenant.clone(),
            id: id.into(),
            name: "hot".into(),
            description: String::new(),
            sql: "SELECT * FROM 'devices/+/telemetry'".into(),
            actions: json!([{"type": "republish", "topic": "hot"}]),
            enabled: true,
            version: 1,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[tokio::test]
    async fn rules_round_trip_with_versions() {
        let (store, _dir, t, _) = store_with_device().await;
        let r = rule(&t, "r1");
        store.create_rule(&r).await.unwrap();
        assert!(matches!(
            store.create_rule(&r).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.get_rule(&t, "r1").await.unwrap(), r);

        let mut changed = r.clone();
        changed.version = 2;
        changed.enabled = false;
        store.update_rule(&changed, 1).await.unwrap();
        assert_eq!(store.get_rule(&t, "r1").await.unwrap(), changed);
        // A stale version is a conflict; a gone rule is not found.
        assert!(matches!(
            store.update_rule(&changed, 1).await,
            Err(StoreError::Conflict { .. })
        ));
        let mut gone = rule(&t, "nope");
        gone.version = 2;
        assert!(matches!(
            store.update_rule(&gone, 1).await,
            Err(StoreError::NotFound { .. })
        ));

        store.create_rule(&rule(&t, "r2")).await.unwrap();
        let first = store
            .list_rules(
                &t,
                &PageRequest {
                    limit: 1,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items[0].id, "r1");
        let second = store
            .list_rules(
                &t,
                &PageRequest {
                    limit: 1,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!(second.items[0].id, "r2");
        assert_eq!(second.next, None);
        assert_eq!(store.all_rules().await.unwrap().len(), 2);

        store.delete_rule(&t, "r1").await.unwrap();
        assert!(matches!(
            store.delete_rule(&t, "r1").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_tenants_rules_go_with_it() {
        let (store, _dir, t, _) = store_with_device().await;
        store.create_rule(&rule(&t, "r1")).await.unwrap();
        store.delete_tenant(&t).await.unwrap();
        assert!(store.all_rules().await.unwrap().is_empty());
        assert!(matches!(
            store.create_rule(&rule(&t, "r2")).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

//! [`DashboardStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::TenantId;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::EmbeddedStore;
use super::meta::{conflict, found};
use crate::dashboards::{DashboardRecord, DashboardStore};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str =
    "tenant, id, name, description, widgets, version, created_at, updated_at, shared_at";

fn record(r: &Row<'_>) -> rusqlite::Result<Result<DashboardRecord>> {
    let (tenant, widgets): (String, String) = (r.get(0)?, r.get(4)?);
    let bad = |what: String| StoreError::backend("dashboard", what);
    let tenant = match TenantId::new(tenant) {
        Ok(t) => t,
        Err(e) => return Ok(Err(bad(e.to_string()))),
    };
    let widgets = match serde_json::from_str(&widgets) {
        Ok(w) => w,
        Err(e) => return Ok(Err(bad(e.to_string()))),
    };
    Ok(Ok(DashboardRecord {
        tenant,
        id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        widgets,
        version: r.get::<_, i64>(5)? as u64,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        shared_at: r.get(8)?,
    }))
}

fn one(c: &Connection, filter: &str, args: impl rusqlite::Params) -> Result<DashboardRecord> {
    c.prepare_cached(&format!("SELECT {COLS} FROM dashboards WHERE {filter}"))?
        .query_row(args, record)
        .optional()?
        .ok_or(StoreError::NotFound { kind: "dashboard" })?
}

#[async_trait]
impl DashboardStore for EmbeddedStore {
    async fn create_dashboard(&self, dashboard: &DashboardRecord) -> Result<()> {
        let d = dashboard.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO dashboards (tenant, id, name, description, widgets, version,
                    created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    d.tenant.as_str(),
                    d.id,
                    d.name,
                    d.description,
                    d.widgets.to_string(),
                    d.version as i64,
                    d.created_at,
                    d.updated_at
                ],
            )
            .map_err(|e| match &e {
                // The tenant is gone (deleted meanwhile).
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound { kind: "tenant" }
                }
                _ => conflict("dashboard")(e),
            })?;
            Ok(())
        })
        .await
    }

    async fn update_dashboard(
        &self,
        dashboard: &DashboardRecord,
        expected_version: u64,
    ) -> Result<()> {
        let d = dashboard.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE dashboards SET name = ?3, description = ?4, widgets = ?5,
                    version = ?6, updated_at = ?7
                 WHERE tenant = ?1 AND id = ?2 AND version = ?8",
                params![
                    d.tenant.as_str(),
                    d.id,
                    d.name,
                    d.description,
                    d.widgets.to_string(),
                    d.version as i64,
                    d.updated_at,
                    expected_version as i64
                ],
            )?;
            if n == 0 {
                // Gone, or changed by someone else meanwhile.
                one(
                    tx,
                    "tenant = ?1 AND id = ?2",
                    params![d.tenant.as_str(), d.id],
                )?;
                return Err(StoreError::Conflict { kind: "dashboard" });
            }
            Ok(())
        })
        .await
    }

    async fn get_dashboard(&self, tenant: &TenantId, id: &str) -> Result<DashboardRecord> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| one(c, "tenant = ?1 AND id = ?2", params![tenant.as_str(), id]))
            .await
    }

    async fn list_dashboards(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DashboardRecord>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM dashboards WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(
                params![
                    tenant.as_str(),
                    page.after.as_deref().unwrap_or(""),
                    limit as i64 + 1
                ],
                record,
            )?;
            let mut items = rows.map(|r| r?).collect::<Result<Vec<DashboardRecord>>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|d| d.id.clone())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_dashboard(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM dashboards WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            found(n, "dashboard")
        })
        .await
    }

    async fn set_dashboard_share(
        &self,
        tenant: &TenantId,
        id: &str,
        share: Option<(&str, i64)>,
    ) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        let (hash, at) = share.map(|(h, at)| (h.to_owned(), at)).unzip();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE dashboards SET share_hash = ?3, shared_at = ?4
                 WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id, hash, at],
            )?;
            found(n, "dashboard")
        })
        .await
    }

    async fn shared_dashboard(&self, share_hash: &str) -> Result<DashboardRecord> {
        let hash = share_hash.to_owned();
        self.read(move |c| one(c, "share_hash = ?1", params![hash]))
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::MetaStore;
    use crate::embedded::tests::store_with_device;

    fn dashboard(tenant: &TenantId, id: &str) -> DashboardRecord {
        DashboardRecord {
            tenant: tenant.clone(),
            id: id.into(),
            name: "Plant".into(),
            description: String::new(),
            widgets: json!([{"id": "w1", "type": "latest_value"}]),
            version: 1,
            created_at: 1,
            updated_at: 1,
            shared_at: None,
        }
    }

    #[tokio::test]
    async fn dashboards_round_trip_with_versions_and_share_links() {
        let (store, _dir, t, _) = store_with_device().await;
        let d = dashboard(&t, "d1");
        store.create_dashboard(&d).await.unwrap();
        assert!(matches!(
            store.create_dashboard(&d).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.get_dashboard(&t, "d1").await.unwrap(), d);

        // Shared: found by the token's hash; the link survives an edit.
        store
            .set_dashboard_share(&t, "d1", Some(("h1", 5)))
            .await
            .unwrap();
        let mut changed = d.clone();
        changed.version = 2;
        changed.widgets = json!([]);
        store.update_dashboard(&changed, 1).await.unwrap();
        let shared = store.shared_dashboard("h1").await.unwrap();
        assert_eq!((shared.version, shared.shared_at), (2, Some(5)));
        assert!(matches!(
            store.update_dashboard(&changed, 1).await,
            Err(StoreError::Conflict { .. })
        ));

        // A new link replaces the old; revoking ends it.
        store
            .set_dashboard_share(&t, "d1", Some(("h2", 6)))
            .await
            .unwrap();
        assert!(store.shared_dashboard("h1").await.is_err());
        store.set_dashboard_share(&t, "d1", None).await.unwrap();
        assert!(matches!(
            store.shared_dashboard("h2").await,
            Err(StoreError::NotFound { .. })
        ));

        store.create_dashboard(&dashboard(&t, "d2")).await.unwrap();
        let first = store
            .list_dashboards(
                &t,
                &PageRequest {
                    limit: 1,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items[0].id, "d1");
        let second = store
            .list_dashboards(
                &t,
                &PageRequest {
                    limit: 1,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!((second.items[0].id.as_str(), second.next), ("d2", None));

        store.delete_dashboard(&t, "d1").await.unwrap();
        assert!(matches!(
            store.delete_dashboard(&t, "d1").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_tenants_dashboards_and_links_go_with_it() {
        let (store, _dir, t, _) = store_with_device().await;
        store.create_dashboard(&dashboard(&t, "d1")).await.unwrap();
        store
            .set_dashboard_share(&t, "d1", Some(("h", 1)))
            .await
            .unwrap();
        store.delete_tenant(&t).await.unwrap();
        assert!(store.shared_dashboard("h").await.is_err());
        assert!(matches!(
            store.create_dashboard(&dashboard(&t, "d2")).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

//! [`AppStore`] on SQLite: the files are blobs beside their app's row.

use async_trait::async_trait;
use ferrule_core::TenantId;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::EmbeddedStore;
use super::meta::conflict;
use crate::apps::{AppFile, AppRecord, AppStore};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str = "tenant, id, name, key_id, key_secret, files, bytes, created_at, updated_at";

fn record(r: &Row<'_>) -> rusqlite::Result<Result<AppRecord>> {
    let tenant = match TenantId::new(r.get::<_, String>(0)?) {
        Ok(t) => t,
        Err(e) => return Ok(Err(StoreError::backend("app", e.to_string()))),
    };
    Ok(Ok(AppRecord {
        tenant,
        id: r.get(1)?,
        name: r.get(2)?,
        key_id: r.get(3)?,
        key_secret: r.get(4)?,
        files: r.get::<_, i64>(5)? as u64,
        bytes: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    }))
}

fn one(c: &Connection, tenant: &str, id: &str) -> Result<AppRecord> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM apps WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], record)
    .optional()?
    .ok_or(StoreError::NotFound { kind: "app" })?
}

fn insert_files(tx: &Transaction<'_>, app: &AppRecord, files: &[AppFile]) -> Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO app_files (tenant, app, path, body) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for f in files {
        st.execute(params![app.tenant.as_str(), app.id, f.path, f.body])
            .map_err(conflict("app file"))?;
    }
    Ok(())
}

#[async_trait]
impl AppStore for EmbeddedStore {
    async fn create_app(&self, app: &AppRecord, files: Vec<AppFile>) -> Result<()> {
        let a = app.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO apps (tenant, id, name, key_id, key_secret, files, bytes,
                    created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    a.tenant.as_str(),
                    a.id,
                    a.name,
                    a.key_id,
                    a.key_secret,
                    a.files as i64,
                    a.bytes as i64,
                    a.created_at,
                    a.updated_at
                ],
            )
            .map_err(|e| match &e {
                // The tenant is gone (deleted meanwhile).
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound { kind: "tenant" }
                }
                _ => conflict("app")(e),
            })?;
            insert_files(tx, &a, &files)
        })
        .await
    }

    async fn replace_app_files(&self, app: &AppRecord, files: Vec<AppFile>) -> Result<()> {
        let a = app.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE apps SET files = ?3, bytes = ?4, updated_at = ?5
                 WHERE tenant = ?1 AND id = ?2",
                params![
                    a.tenant.as_str(),
                    a.id,
                    a.files as i64,
                    a.bytes as i64,
                    a.updated_at
                ],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound { kind: "app" });
            }
            tx.execute(
                "DELETE FROM app_files WHERE tenant = ?1 AND app = ?2",
                params![a.tenant.as_str(), a.id],
            )?;
            insert_files(tx, &a, &files)
        })
        .await
    }

    async fn get_app(&self, tenant: &TenantId, id: &str) -> Result<AppRecord> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| one(c, tenant.as_str(), &id)).await
    }

    async fn list_apps(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<AppRecord>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM apps WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st.query_map(
                params![
                    tenant.as_str(),
                    page.after.as_deref().unwrap_or(""),
                    limit as i64 + 1
                ],
                record,
            )?;
            let mut items = rows.map(|r| r?).collect::<Result<Vec<AppRecord>>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|a| a.id.clone())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn delete_app(&self, tenant: &TenantId, id: &str) -> Result<AppRecord> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let app = one(tx, tenant.as_str(), &id)?;
            // The files go by the foreign key's cascade.
            tx.execute(
                "DELETE FROM apps WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            Ok(app)
        })
        .await
    }

    async fn app_file(&self, tenant: &TenantId, id: &str, path: &str) -> Result<Vec<u8>> {
        let (tenant, id, path) = (tenant.clone(), id.to_owned(), path.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT body FROM app_files WHERE tenant = ?1 AND app = ?2 AND path = ?3",
            )?
            .query_row(params![tenant.as_str(), id, path], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound { kind: "file" })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetaStore;
    use crate::embedded::tests::store_with_device;

    fn app(tenant: &TenantId, id: &str) -> AppRecord {
        AppRecord {
            tenant: tenant.clone(),
            id: id.into(),
            name: "Plant view".into(),
            key_id: format!("k_{id}"),
            key_secret: "fk_x".into(),
            files: 2,
            bytes: 7,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn files(index: &str) -> Vec<AppFile> {
        vec![
            AppFile {
                path: "index.html".into(),
                body: index.as_bytes().to_vec(),
            },
            AppFile {
                path: "js/app.js".into(),
                body: b"1;".to_vec(),
            },
        ]
    }

    #[tokio::test]
    async fn apps_round_trip_with_their_files() {
        let (store, _dir, t, _) = store_with_device().await;
        let a = app(&t, "a1");
        store.create_app(&a, files("hello")).await.unwrap();
        assert!(matches!(
            store.create_app(&a, files("again")).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(store.get_app(&t, "a1").await.unwrap(), a);
        assert_eq!(
            store.app_file(&t, "a1", "index.html").await.unwrap(),
            b"hello"
        );
        assert_eq!(store.app_file(&t, "a1", "js/app.js").await.unwrap(), b"1;");

        // Replacing swaps the whole bundle: files absent from the new one go.
        let mut b = a.clone();
        b.files = 1;
        b.updated_at = 2;
        store
            .replace_app_files(&b, files("new")[..1].to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.app_file(&t, "a1", "index.html").await.unwrap(),
            b"new"
        );
        assert!(matches!(
            store.app_file(&t, "a1", "js/app.js").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.get_app(&t, "a1").await.unwrap(), b);

        store.create_app(&app(&t, "a2"), files("x")).await.unwrap();
        let first = store
            .list_apps(
                &t,
                &PageRequest {
                    limit: 1,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items[0].id, "a1");
        let second = store
            .list_apps(
                &t,
                &PageRequest {
                    limit: 1,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!((second.items[0].id.as_str(), second.next), ("a2", None));

        assert_eq!(store.delete_app(&t, "a1").await.unwrap(), b);
        assert!(store.app_file(&t, "a1", "index.html").await.is_err());
        assert!(matches!(
            store.delete_app(&t, "a1").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.replace_app_files(&b, files("z")).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn a_duplicate_path_keeps_nothing() {
        let (store, _dir, t, _) = store_with_device().await;
        let mut twice = files("a");
        twice.push(twice[0].clone());
        assert!(store.create_app(&app(&t, "a1"), twice).await.is_err());
        assert!(store.get_app(&t, "a1").await.is_err());
        assert!(store.app_file(&t, "a1", "index.html").await.is_err());
    }

    #[tokio::test]
    async fn a_tenants_apps_and_files_go_with_it() {
        let (store, _dir, t, _) = store_with_device().await;
        store.create_app(&app(&t, "a1"), files("a")).await.unwrap();
        store.delete_tenant(&t).await.unwrap();
        assert!(store.app_file(&t, "a1", "index.html").await.is_err());
        assert!(matches!(
            store.create_app(&app(&t, "a2"), files("b")).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

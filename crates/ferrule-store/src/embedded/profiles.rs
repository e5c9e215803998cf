//! [`ProfileStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::EmbeddedStore;
use super::meta::{
    DEVICE_COLS, conflict, device_col, device_row, found, ms, paged, tenant_col, ts_col,
};
use crate::profiles::{DEFAULT_PROFILE, DeviceFilter, DeviceProfile, ProfileStore};
use crate::{Device, Page, PageRequest, Result, StoreError};

const PROFILE_COLS: &str = "tenant, name, description, telemetry_schema, state_schema, retention_days, defaults, created_at, updated_at";

/// A tenant's profiles with the implicit `default` added when none is
/// saved, so reads and listings see it like any other.
const WITH_DEFAULT: &str = "
    SELECT tenant, name, description, telemetry_schema, state_schema, retention_days, defaults, created_at, updated_at
      FROM device_profiles WHERE tenant = ?1
    UNION ALL
    SELECT t.id, 'default', '', NULL, NULL, NULL, '{}', t.created_at, t.created_at
      FROM tenants t
     WHERE t.id = ?1
       AND NOT EXISTS (SELECT 1 FROM device_profiles p WHERE p.tenant = ?1 AND p.name = 'default')";

#[async_trait]
impl ProfileStore for EmbeddedStore {
    async fn create_profile(&self, profile: &DeviceProfile) -> Result<DeviceProfile> {
        let p = profile.clone();
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO device_profiles ({PROFILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                profile_params(&p)?,
            )
            .map_err(|e| match &e {
                // The tenant is gone (deleted meanwhile).
                rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    StoreError::NotFound { kind: "tenant" }
                }
                _ => conflict("device profile")(e),
            })?;
            get_profile(tx, &p.tenant, &p.name)
        })
        .await
    }

    async fn get_profile(&self, tenant: &TenantId, name: &str) -> Result<DeviceProfile> {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        self.read(move |c| get_profile(c, &tenant, &name)).await
    }

    async fn list_profiles(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<DeviceProfile>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| {
            paged(&page, |after, limit| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT * FROM ({WITH_DEFAULT}) WHERE name > ?2 ORDER BY name LIMIT ?3"
                ))?;
                let rows = st.query_map(params![tenant.as_str(), after, limit], profile_row)?;
                rows.map(|r| r.map_err(StoreError::from)?).collect()
            })
        })
        .await
    }

    async fn update_profile(&self, profile: &DeviceProfile) -> Result<DeviceProfile> {
        let p = profile.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE device_profiles SET description = ?3, telemetry_schema = ?4, state_schema = ?5,
                        retention_days = ?6, defaults = ?7, updated_at = ?9
                  WHERE tenant = ?1 AND name = ?2",
                profile_params(&p)?,
            )?;
            if n == 0 && p.name == DEFAULT_PROFILE {
                // `default` exists without a row until first saved.
                let created = get_profile(tx, &p.tenant, DEFAULT_PROFILE)?.created_at;
                let mut row = p.clone();
                row.created_at = created;
                tx.execute(
                    &format!("INSERT INTO device_profiles ({PROFILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                    profile_params(&row)?,
                )?;
            } else {
                found(n, "device profile")?;
            }
            get_profile(tx, &p.tenant, &p.name)
        })
        .await
    }

    async fn delete_profile(&self, tenant: &TenantId, name: &str) -> Result<()> {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        self.write(move |tx| {
            if name == DEFAULT_PROFILE {
                // Back to the implicit, empty `default`; it never stops existing.
                get_profile(tx, &tenant, DEFAULT_PROFILE)?;
                tx.execute(
                    "DELETE FROM device_profiles WHERE tenant = ?1 AND name = 'default'",
                    params![tenant.as_str()],
                )?;
                return Ok(());
            }
            let users: i64 = tx.query_row(
                "SELECT count(*) FROM devices WHERE tenant = ?1 AND profile = ?2",
                params![tenant.as_str(), name],
                |r| r.get(0),
            )?;
            // Checked before the delete so that a missing profile is 404
            // even if devices name it (created before profiles were checked).
            let exists = tx
                .query_row(
                    "SELECT 1 FROM device_profiles WHERE tenant = ?1 AND name = ?2",
                    params![tenant.as_str(), name],
                    |_| Ok(()),
                )
                .optional()?;
            found(usize::from(exists.is_some()), "device profile")?;
            if users > 0 {
                return Err(StoreError::Refused(format!(
                    "device profile {name} is used by {users} device(s): move them to another profile first"
                )));
            }
            tx.execute(
                "DELETE FROM device_profiles WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name],
            )?;
            Ok(())
        })
        .await
    }

    async fn all_profiles(&self) -> Result<Vec<DeviceProfile>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {PROFILE_COLS} FROM device_profiles ORDER BY tenant, name"
            ))?;
            let rows = st.query_map([], profile_row)?;
            let mut out = Vec::new();
            for (i, row) in rows.enumerate() {
                // The row's tenant and name are what failed to decode, if
                // anything: it is named by its place in that order.
                let what = || format!("row {} by (tenant, name)", i + 1);
                if let Some(p) = crate::unreadable::skip("device_profiles", what, row?) {
                    out.push(p);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn devices_with_profiles(&self) -> Result<Vec<(TenantId, DeviceId, String)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT tenant, id, profile FROM devices WHERE profile <> 'default' ORDER BY tenant, id",
            )?;
            let rows = st.query_map([], |r| Ok((tenant_col(r, 0)?, device_col(r, 1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn list_devices_matching(
        &self,
        tenant: &TenantId,
        filter: &DeviceFilter,
        page: &PageRequest,
    ) -> Result<Page<Device>> {
        let (tenant, filter, page) = (tenant.clone(), filter.clone(), page.clone());
        self.read(move |c| {
            paged(&page, |after, limit| {
                devices_matching(c, &tenant, &filter, after, limit)
            })
        })
        .await
    }
}

/// One page of devices where every condition of `filter` holds, in SQL so
/// that a page holds `limit` matches however sparse they are.
fn devices_matching(
    c: &Connection,
    tenant: &TenantId,
    filter: &DeviceFilter,
    after: &str,
    limit: i64,
) -> Result<Vec<Device>> {
    let mut sql = format!("SELECT {DEVICE_COLS} FROM devices WHERE tenant = ?1 AND id > ?2");
    let mut args: Vec<SqlValue> = vec![
        tenant.as_str().to_owned().into(),
        after.to_owned().into(),
        limit.into(),
    ];
    if let Some(profile) = &filter.profile {
        args.push(profile.clone().into());
        sql.push_str(&format!(" AND profile = ?{}", args.len()));
    }
    for (key, value) in &filter.labels {
        // json_each compares keys as data: no label key can inject into a
        // JSON path.
        args.push(key.clone().into());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(devices.attributes, '$.labels') WHERE key = ?{}",
            args.len()
        ));
        if let Some(value) = value {
            args.push(value.clone().into());
            sql.push_str(&format!(" AND type = 'text' AND value = ?{}", args.len()));
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY id LIMIT ?3");
    let mut st = c.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(args), device_row)?;
    rows.map(|r| r.map_err(StoreError::from)?).collect()
}

fn get_profile(c: &Connection, tenant: &TenantId, name: &str) -> Result<DeviceProfile> {
    c.prepare_cached(&format!("SELECT * FROM ({WITH_DEFAULT}) WHERE name = ?2"))?
        .query_row(params![tenant.as_str(), name], profile_row)
        .optional()?
        .unwrap_or(Err(StoreError::NotFound {
            kind: "device profile",
        }))
}

fn profile_params(p: &DeviceProfile) -> Result<[SqlValue; 9]> {
    let json = |v: &serde_json::Value| {
        serde_json::to_string(v).map_err(|e| StoreError::backend("device profile JSON", e))
    };
    let opt = |v: &Option<serde_json::Value>| -> Result<SqlValue> {
        Ok(match v {
            Some(v) => json(v)?.into(),
            None => SqlValue::Null,
        })
    };
    Ok([
        p.tenant.as_str().to_owned().into(),
        p.name.clone().into(),
        p.description.clone().into(),
        opt(&p.telemetry_schema)?,
        opt(&p.state_schema)?,
        p.retention_days
            .map_or(SqlValue::Null, |d| i64::from(d).into()),
        json(&p.defaults)?.into(),
        ms(p.created_at).into(),
        ms(p.updated_at).into(),
    ])
}

fn profile_row(r: &Row<'_>) -> rusqlite::Result<Result<DeviceProfile>> {
    let parse = |idx: usize| -> rusqlite::Result<Result<Option<serde_json::Value>>> {
        let text: Option<String> = r.get(idx)?;
        Ok(text
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::backend("device profile JSON", e)))
    };
    let telemetry_schema = match parse(3)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let state_schema = match parse(4)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let defaults = match parse(6)? {
        Ok(v) => v.unwrap_or_else(|| serde_json::json!({})),
        Err(e) => return Ok(Err(e)),
    };
    let retention_days: Option<i64> = r.get(5)?;
    Ok(Ok(DeviceProfile {
        tenant: tenant_col(r, 0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        telemetry_schema,
        state_schema,
        retention_days: retention_days.and_then(|d| u32::try_from(d).ok()),
        defaults,
        created_at: ts_col(r, 7)?,
        updated_at: ts_col(r, 8)?,
    }))
}

impl super::meta::HasId for DeviceProfile {
    fn page_key(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{MetaStore, NewDevice};

    async fn store() -> (tempfile::TempDir, EmbeddedStore, TenantId, TenantId) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        for t in [&a, &b] {
            store.create_tenant(t, "T").await.unwrap();
        }
        (dir, store, a, b)
    }

    fn profile(tenant: &TenantId, name: &str) -> DeviceProfile {
        let now = jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap();
        DeviceProfile {
            tenant: tenant.clone(),
            name: name.into(),
            description: "d".into(),
            telemetry_schema: Some(json!({"type": "object"})),
            state_schema: None,
            retention_days: Some(3),
            defaults: json!({"k": 1}),
            created_at: now,
            updated_at: now,
        }
    }

    async fn device(
        store: &EmbeddedStore,
        t: &TenantId,
        id: &str,
        profile: &str,
        attributes: serde_json::Value,
    ) {
        store
            .create_device(&NewDevice {
                tenant: t.clone(),
                id: DeviceId::new(id).unwrap(),
                name: id.into(),
                profile: profile.into(),
                attributes,
            })
            .await
            .unwrap();
    }

    fn names(page: &Page<DeviceProfile>) -> Vec<&str> {
        page.items.iter().map(|p| p.name.as_str()).collect()
    }

    #[tokio::test]
    async fn profiles_round_trip_per_tenant_with_an_implicit_default() {
        let (_dir, s, a, b) = store().await;
        let p = profile(&a, "pumps");
        assert_eq!(s.create_profile(&p).await.unwrap(), p);
        assert!(matches!(
            s.create_profile(&p).await,
            Err(StoreError::Conflict { .. })
        ));
        // Another tenant: not found, exactly as a missing one.
        assert!(matches!(
            s.get_profile(&b, "pumps").await,
            Err(StoreError::NotFound { .. })
        ));
        let implicit = s.get_profile(&b, DEFAULT_PROFILE).await.unwrap();
        assert_eq!(implicit.telemetry_schema, None);
        assert_eq!(implicit.defaults, json!({}));

        let all = PageRequest {
            limit: 10,
            after: None,
        };
        assert_eq!(
            names(&s.list_profiles(&a, &all).await.unwrap()),
            ["default", "pumps"]
        );
        let first = s
            .list_profiles(
                &a,
                &PageRequest {
                    limit: 1,
                    after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (names(&first), first.next.as_deref()),
            (vec!["default"], Some("default"))
        );
        let second = s
            .list_profiles(
                &a,
                &PageRequest {
                    limit: 1,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (names(&second), second.next.as_deref()),
            (vec!["pumps"], None)
        );

        // Saving `default` makes it a row; deleting it makes it implicit again.
        let saved = s
            .update_profile(&profile(&a, DEFAULT_PROFILE))
            .await
            .unwrap();
        assert_eq!(saved.retention_days, Some(3));
        assert_eq!(
            names(&s.list_profiles(&a, &all).await.unwrap()),
            ["default", "pumps"]
        );
        s.delete_profile(&a, DEFAULT_PROFILE).await.unwrap();
        assert_eq!(
            s.get_profile(&a, DEFAULT_PROFILE)
                .await
                .unwrap()
                .retention_days,
            None
        );

        let changed = DeviceProfile {
            telemetry_schema: None,
            description: "new".into(),
            ..profile(&a, "pumps")
        };
        let got = s.update_profile(&changed).await.unwrap();
        assert_eq!(
            (got.description.as_str(), got.telemetry_schema),
            ("new", None)
        );
        assert!(matches!(
            s.update_profile(&profile(&b, "pumps")).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.all_profiles().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_profile_in_use_is_not_deleted() {
        let (_dir, s, a, b) = store().await;
        s.create_profile(&profile(&a, "pumps")).await.unwrap();
        device(&s, &a, "p1", "pumps", json!({})).await;
        assert!(matches!(
            s.delete_profile(&a, "pumps").await,
            Err(StoreError::Refused(_))
        ));
        assert!(matches!(
            s.delete_profile(&b, "pumps").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            s.devices_with_profiles().await.unwrap(),
            [(a.clone(), DeviceId::new("p1").unwrap(), "pumps".to_owned())]
        );
        s.delete_device(&a, &DeviceId::new("p1").unwrap())
            .await
            .unwrap();
        s.delete_profile(&a, "pumps").await.unwrap();
        assert!(matches!(
            s.get_profile(&a, "pumps").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn devices_are_filtered_before_paging() {
        let (_dir, s, a, b) = store().await;
        for i in 0..6 {
            let site = if i % 2 == 0 { "north" } else { "south" };
            let profile = if i < 3 { "default" } else { "meters" };
            device(
                &s,
                &a,
                &format!("d{i}"),
                profile,
                json!({"labels": {"site": site, "n": i.to_string()}}),
            )
            .await;
        }
        device(
            &s,
            &a,
            "odd",
            "default",
            json!({"labels": "site", "site": "north"}),
        )
        .await;
        device(
            &s,
            &b,
            "d0",
            "default",
            json!({"labels": {"site": "north"}}),
        )
        .await;
        let filter = |labels: &[(&str, Option<&str>)], profile: Option<&str>| DeviceFilter {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            profile: profile.map(str::to_owned),
        };
        let walk = |f: DeviceFilter| {
            let (s, a) = (s.clone(), a.clone());
            async move {
                let mut ids = Vec::new();
                let mut page = PageRequest {
                    limit: 2,
                    after: None,
                };
                loop {
                    let got = s.list_devices_matching(&a, &f, &page).await.unwrap();
                    if got.next.is_some() {
                        assert_eq!(got.items.len(), 2);
                    }
                    ids.extend(got.items.into_iter().map(|d| d.id.to_string()));
                    match got.next {
                        Some(n) => page.after = Some(n),
                        None => return ids,
                    }
                }
            }
        };
        assert_eq!(
            walk(filter(&[("site", Some("north"))], None)).await,
            ["d0", "d2", "d4"]
        );
        assert_eq!(
            walk(filter(&[("site", None)], Some("meters"))).await,
            ["d3", "d4", "d5"]
        );
        assert_eq!(
            walk(filter(&[("site", Some("south")), ("n", Some("5"))], None)).await,
            ["d5"]
        );
        // Keys and values are data: quotes and paths match nothing.
        assert!(
            walk(filter(&[("site\" OR 1=1 --", None)], None))
                .await
                .is_empty()
        );
        assert!(
            walk(filter(&[("site", Some("north' OR '1'='1"))], None))
                .await
                .is_empty()
        );
    }
}

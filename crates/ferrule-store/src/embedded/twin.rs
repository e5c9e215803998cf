//! [`TwinStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::EmbeddedStore;
use crate::twin::{TwinChange, TwinHistoryQuery, TwinRecord, TwinSection, TwinStore, TwinWrite};
use crate::{Page, Result, StoreError};

fn object(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::backend(
            "twin",
            "a stored twin document is not an object",
        )),
        Err(e) => Err(StoreError::backend("twin", e)),
    }
}

fn text(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

fn ids(tenant: String, device: String) -> Result<(TenantId, DeviceId)> {
    let bad = |e: ferrule_core::IdError| StoreError::backend("twin", e);
    Ok((
        TenantId::new(tenant).map_err(bad)?,
        DeviceId::new(device).map_err(bad)?,
    ))
}

fn change_row(r: &Row<'_>) -> rusqlite::Result<(i64, i64, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

#[async_trait]
impl TwinStore for EmbeddedStore {
    async fn load_twin(&self, tenant: &TenantId, device: &DeviceId) -> Result<Option<TwinRecord>> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT reported, reported_meta, reported_version, desired, desired_meta,
                            desired_version, version, updated_at
                     FROM twins WHERE tenant = ?1 AND device = ?2",
                )?
                .query_row(params![tenant.as_str(), device.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .optional()?;
            let Some((rep, rep_meta, rep_v, des, des_meta, des_v, v, at)) = row else {
                return Ok(None);
            };
            Ok(Some(TwinRecord {
                reported: object(&rep)?,
                reported_meta: object(&rep_meta)?,
                reported_version: rep_v as u64,
                desired: object(&des)?,
                desired_meta: object(&des_meta)?,
                desired_version: des_v as u64,
                version: v as u64,
                updated_at: at,
            }))
        })
        .await
    }

    async fn twin_sizes(&self) -> Result<Vec<(TenantId, DeviceId, usize, usize)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT tenant, device, length(reported), length(desired) FROM twins",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, d, rep, des) = row?;
                let (t, d) = ids(t, d)?;
                out.push((t, d, rep as usize, des as usize));
            }
            Ok(out)
        })
        .await
    }

    async fn save_twins(&self, writes: Vec<TwinWrite>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            let mut exists =
                tx.prepare_cached("SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2")?;
            let mut twin = tx.prepare_cached(
                "INSERT INTO twins (tenant, device, reported, reported_meta, reported_version,
                                    desired, desired_meta, desired_version, version, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (tenant, device) DO UPDATE SET
                    reported = excluded.reported, reported_meta = excluded.reported_meta,
                    reported_version = excluded.reported_version, desired = excluded.desired,
                    desired_meta = excluded.desired_meta, desired_version = excluded.desired_version,
                    version = excluded.version, updated_at = excluded.updated_at",
            )?;
            let mut history = tx.prepare_cached(
                "INSERT OR REPLACE INTO twin_history (tenant, device, version, ts, section, actor, patch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for w in writes {
                let (t, d) = (w.tenant.as_str(), w.device.as_str());
                // Deleted meanwhile: its deletion won, nothing to keep.
                if !exists.exists(params![t, d])? {
                    continue;
                }
                let r = &w.twin;
                twin.execute(params![
                    t,
                    d,
                    text(&r.reported),
                    text(&r.reported_meta),
                    r.reported_version as i64,
                    text(&r.desired),
                    text(&r.desired_meta),
                    r.desired_version as i64,
                    r.version as i64,
                    r.updated_at,
                ])?;
                for ch in &w.changes {
                    history.execute(params![
                        t,
                        d,
                        ch.version as i64,
                        ch.ts,
                        ch.section.as_str(),
                        ch.actor,
                        ch.patch.to_string(),
                    ])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn twin_history(&self, q: TwinHistoryQuery) -> Result<Page<TwinChange>> {
        self.read(move |c| {
            let limit = q.limit.max(1) as usize;
            let mut st = c.prepare_cached(
                "SELECT version, ts, section, actor, patch FROM twin_history
                 WHERE tenant = ?1 AND device = ?2 AND ts >= ?3 AND ts < ?4 AND version > ?5
                   AND (?6 IS NULL OR section = ?6)
                 ORDER BY version LIMIT ?7",
            )?;
            let rows = st.query_map(
                params![
                    q.tenant.as_str(),
                    q.device.as_str(),
                    q.from,
                    q.to,
                    q.after.unwrap_or(0) as i64,
                    q.section.map(TwinSection::as_str),
                    limit as i64 + 1,
                ],
                change_row,
            )?;
            let mut items = Vec::new();
            for row in rows {
                let (version, ts, section, actor, patch) = row?;
                items.push(TwinChange {
                    version: version as u64,
                    ts,
                    section: TwinSection::parse(&section).ok_or_else(|| {
                        StoreError::backend("twin history", format!("unknown section {section}"))
                    })?,
                    actor,
                    patch: serde_json::from_str(&patch)
                        .map_err(|e| StoreError::backend("twin history", e))?,
                });
            }
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|c| c.version.to_string())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn prune_twin_history(&self, tenant: &TenantId, before: i64) -> Result<u64> {
        let tenant = tenant.clone();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM twin_history WHERE tenant = ?1 AND ts < ?2",
                params![tenant.as_str(), before],
            )? as u64)
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

    fn change(version: u64, ts: i64, section: TwinSection) -> TwinChange {
        TwinChange {
            version,
            ts,
            section,
            actor: "device:d".into(),
            patch: json!({"v": version}),
        }
    }

    #[tokio::test]
    async fn a_twin_and_its_history_read_back_and_go_with_the_device() {
        let (store, _dir, t, d) = store_with_device().await;
        assert_eq!(store.load_twin(&t, &d).await.unwrap(), None);
        let twin = TwinRecord {
            reported: json!({"a": 1}).as_object().unwrap().clone(),
            reported_meta: json!({"a": 5}).as_object().unwrap().clone(),
            reported_version: 1,
            desired: json!({"b": {"c": 2}}).as_object().unwrap().clone(),
            desired_meta: json!({"b": {"c": 6}}).as_object().unwrap().clone(),
            desired_version: 2,
            version: 3,
            updated_at: 6,
        };
        let changes = (1..=3)
            .map(|v| {
                change(
                    v,
                    v as i64 * 10,
                    if v == 1 {
                        TwinSection::Reported
                    } else {
                        TwinSection::Desired
                    },
                )
            })
            .collect();
        store
            .save_twins(vec![TwinWrite {
                tenant: t.clone(),
                device: d.clone(),
                twin: twin.clone(),
                changes,
            }])
            .await
            .unwrap();
        assert_eq!(store.load_twin(&t, &d).await.unwrap(), Some(twin));
        let query = |after, section| TwinHistoryQuery {
            tenant: t.clone(),
            device: d.clone(),
            from: 0,
            to: i64::MAX,
            section,
            after,
            limit: 2,
        };
        let first = store.twin_history(query(None, None)).await.unwrap();
        assert_eq!(
            first.items.iter().map(|c| c.version).collect::<Vec<_>>(),
            [1, 2]
        );
        let rest = store
            .twin_history(query(first.next.map(|n| n.parse().unwrap()), None))
            .await
            .unwrap();
        assert_eq!(
            rest.items.iter().map(|c| c.version).collect::<Vec<_>>(),
            [3]
        );
        assert_eq!(rest.next, None);
        let desired = store
            .twin_history(query(None, Some(TwinSection::Desired)))
            .await
            .unwrap();
        assert_eq!(desired.items[0].version, 2);
        assert_eq!(store.prune_twin_history(&t, 20).await.unwrap(), 1);
        assert_eq!(store.twin_sizes().await.unwrap().len(), 1);

        store.delete_device(&t, &d).await.unwrap();
        assert_eq!(store.load_twin(&t, &d).await.unwrap(), None);
        // A late write for the deleted device is skipped, not an error.
        store
            .save_twins(vec![TwinWrite {
                tenant: t.clone(),
                device: d.clone(),
                twin: TwinRecord::default(),
                changes: vec![change(9, 1, TwinSection::Reported)],
            }])
            .await
            .unwrap();
        assert_eq!(store.load_twin(&t, &d).await.unwrap(), None);
    }
}

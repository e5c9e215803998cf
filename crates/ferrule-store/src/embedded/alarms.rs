//! [`AlarmStore`] on SQLite.
//!
//! The partial unique index `alarms_open` (migration 0008) keeps at most one
//! open alarm per (tenant, device, type); the alarms service serializes its
//! writes per tenant, so the index is the last line, not the dedupe itself.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use rusqlite::{OptionalExtension, Row, params};

use super::EmbeddedStore;
use crate::alarms::{AlarmFilter, AlarmRecord, AlarmState, AlarmStore, Severity};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str = "tenant, id, device, type, severity, state, details, count, first_seen, \
                    last_seen, originator, acknowledged_by, acknowledged_at, cleared_by, cleared_at";

/// A row as SQLite gives it; turned into a record (which may fail) after.
struct RawRow {
    tenant: String,
    id: i64,
    device: Option<String>,
    alarm_type: String,
    severity: String,
    state: String,
    details: String,
    count: i64,
    first_seen: i64,
    last_seen: i64,
    originator: String,
    acknowledged_by: Option<String>,
    acknowledged_at: Option<i64>,
    cleared_by: Option<String>,
    cleared_at: Option<i64>,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        tenant: r.get(0)?,
        id: r.get(1)?,
        device: r.get(2)?,
        alarm_type: r.get(3)?,
        severity: r.get(4)?,
        state: r.get(5)?,
        details: r.get(6)?,
        count: r.get(7)?,
        first_seen: r.get(8)?,
        last_seen: r.get(9)?,
        originator: r.get(10)?,
        acknowledged_by: r.get(11)?,
        acknowledged_at: r.get(12)?,
        cleared_by: r.get(13)?,
        cleared_at: r.get(14)?,
    })
}

fn record(row: RawRow) -> Result<AlarmRecord> {
    let bad = |what: String| StoreError::backend("alarm", what);
    Ok(AlarmRecord {
        tenant: TenantId::new(row.tenant).map_err(|e| bad(e.to_string()))?,
        id: row.id as u64,
        device: row
            .device
            .map(DeviceId::new)
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        alarm_type: row.alarm_type,
        severity: Severity::parse(&row.severity)
            .ok_or_else(|| bad(format!("unknown severity {}", row.severity)))?,
        state: AlarmState::parse(&row.state)
            .ok_or_else(|| bad(format!("unknown state {}", row.state)))?,
        details: serde_json::from_str(&row.details).map_err(|e| bad(e.to_string()))?,
        count: row.count as u64,
        first_seen: row.first_seen,
        last_seen: row.last_seen,
        originator: row.originator,
        acknowledged_by: row.acknowledged_by,
        acknowledged_at: row.acknowledged_at,
        cleared_by: row.cleared_by,
        cleared_at: row.cleared_at,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The listing cursor: `last_seen:id` of the last alarm of a page.
fn cursor(a: &AlarmRecord) -> String {
    format!("{}:{}", a.last_seen, a.id)
}

/// Where a page starts; anything unparsable starts over, as other listings do.
fn parse_cursor(after: Option<&str>) -> (i64, i64) {
    after
        .and_then(|a| a.split_once(':'))
        .and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)))
        .unwrap_or((i64::MAX, i64::MAX))
}

#[async_trait]
impl AlarmStore for EmbeddedStore {
    async fn save_alarm(&self, alarm: &AlarmRecord) -> Result<Option<u64>> {
        let a = alarm.clone();
        self.write(move |tx| {
            if let Some(device) = &a.device {
                let exists = tx
                    .prepare_cached("SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2")?
                    .exists(params![a.tenant.as_str(), device.as_str()])?;
                if !exists {
                    return Ok(None);
                }
            }
            if a.id == 0 {
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO alarms (tenant, device, type, severity, state, details, count,
                             first_seen, last_seen, originator, acknowledged_by, acknowledged_at,
                             cleared_by, cleared_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    )?
                    .execute(params![
                        a.tenant.as_str(),
                        a.device.as_ref().map(DeviceId::as_str),
                        a.alarm_type,
                        a.severity.as_str(),
                        a.state.as_str(),
                        a.details.to_string(),
                        a.count as i64,
                        a.first_seen,
                        a.last_seen,
                        a.originator,
                        a.acknowledged_by,
                        a.acknowledged_at,
                        a.cleared_by,
                        a.cleared_at,
                    ]);
                return match inserted {
                    Ok(_) => Ok(Some(tx.last_insert_rowid() as u64)),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                        kind: "open alarm of this device and type",
                    }),
                    Err(e) => Err(e.into()),
                };
            }
            let updated = tx
                .prepare_cached(
                    "UPDATE alarms SET severity = ?3, state = ?4, details = ?5, count = ?6,
                         last_seen = ?7, acknowledged_by = ?8, acknowledged_at = ?9,
                         cleared_by = ?10, cleared_at = ?11
                     WHERE tenant = ?1 AND id = ?2",
                )?
                .execute(params![
                    a.tenant.as_str(),
                    a.id as i64,
                    a.severity.as_str(),
                    a.state.as_str(),
                    a.details.to_string(),
                    a.count as i64,
                    a.last_seen,
                    a.acknowledged_by,
                    a.acknowledged_at,
                    a.cleared_by,
                    a.cleared_at,
                ])?;
            Ok((updated == 1).then_some(a.id))
        })
        .await
    }

    async fn get_alarm(&self, tenant: &TenantId, id: u64) -> Result<AlarmRecord> {
        let tenant = tenant.clone();
        let Ok(id) = i64::try_from(id) else {
            return Err(StoreError::NotFound { kind: "alarm" });
        };
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLS} FROM alarms WHERE tenant = ?1 AND id = ?2"
            ))?
            .query_row(params![tenant.as_str(), id], raw)
            .optional()?
            .map(record)
            .transpose()?
            .ok_or(StoreError::NotFound { kind: "alarm" })
        })
        .await
    }

    async fn open_alarm(
        &self,
        tenant: &TenantId,
        device: Option<&DeviceId>,
        alarm_type: &str,
    ) -> Result<Option<AlarmRecord>> {
        let (tenant, device, alarm_type) = (
            tenant.clone(),
            device.map(|d| d.as_str().to_owned()),
            alarm_type.to_owned(),
        );
        self.read(move |c| {
            // The same expression as the unique index, so SQLite uses it.
            c.prepare_cached(&format!(
                "SELECT {COLS} FROM alarms
                 WHERE tenant = ?1 AND coalesce(device, '') = coalesce(?2, '') AND type = ?3
                   AND state <> 'cleared'"
            ))?
            .query_row(params![tenant.as_str(), device, alarm_type], raw)
            .optional()?
            .map(record)
            .transpose()
        })
        .await
    }

    async fn count_open_alarms(&self, tenant: &TenantId) -> Result<u64> {
        let tenant = tenant.clone();
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM alarms WHERE tenant = ?1 AND state <> 'cleared'",
                )?
                .query_row(params![tenant.as_str()], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn alarm_device_exists(&self, tenant: &TenantId, device: &DeviceId) -> Result<bool> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2")?
                    .exists(params![tenant.as_str(), device.as_str()])?,
            )
        })
        .await
    }

    async fn list_alarms(
        &self,
        tenant: &TenantId,
        filter: &AlarmFilter,
        page: &PageRequest,
    ) -> Result<Page<AlarmRecord>> {
        let (tenant, f, page) = (tenant.clone(), filter.clone(), page.clone());
        let (before_seen, before_id) = parse_cursor(page.after.as_deref());
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM alarms
                 WHERE tenant = ?1
                   AND (last_seen < ?2 OR (last_seen = ?2 AND id < ?3))
                   AND (?4 IS NULL OR device = ?4)
                   AND (?5 IS NULL OR type = ?5)
                   AND (?6 IS NULL OR severity = ?6)
                   AND (?7 IS NULL OR state = ?7)
                   AND (?8 IS NULL OR last_seen >= ?8)
                   AND (?9 IS NULL OR last_seen < ?9)
                 ORDER BY last_seen DESC, id DESC LIMIT ?10"
            ))?;
            let rows = st.query_map(
                params![
                    tenant.as_str(),
                    before_seen,
                    before_id,
                    f.device.as_ref().map(DeviceId::as_str),
                    f.alarm_type,
                    f.severity.map(Severity::as_str),
                    f.state.map(AlarmState::as_str),
                    f.from,
                    f.to,
                    limit as i64 + 1,
                ],
                raw,
            )?;
            let mut items = rows
                .map(|r| record(r?))
                .collect::<Result<Vec<AlarmRecord>>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(cursor)
            } else {
                None
            };
            Ok(Page { items, next })
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

    fn alarm(t: &TenantId, d: Option<&DeviceId>, kind: &str, seen: i64) -> AlarmRecord {
        AlarmRecord {
            tenant: t.clone(),
            id: 0,
            device: d.cloned(),
            alarm_type: kind.into(),
            severity: Severity::Major,
            state: AlarmState::Active,
            details: json!({"temp": seen}),
            count: 1,
            first_seen: seen,
            last_seen: seen,
            originator: "rule:r1".into(),
            acknowledged_by: None,
            acknowledged_at: None,
            cleared_by: None,
            cleared_at: None,
        }
    }

    async fn insert(store: &EmbeddedStore, a: &AlarmRecord) -> AlarmRecord {
        let id = store.save_alarm(a).await.unwrap().unwrap();
        AlarmRecord { id, ..a.clone() }
    }

    fn ids(page: &Page<AlarmRecord>) -> Vec<u64> {
        page.items.iter().map(|a| a.id).collect()
    }

    #[tokio::test]
    async fn an_alarm_round_trips_and_updates_by_id() {
        let (store, _dir, t, d) = store_with_device().await;
        let mut a = insert(&store, &alarm(&t, Some(&d), "overheat", 10)).await;
        assert_eq!(store.get_alarm(&t, a.id).await.unwrap(), a);
        assert_eq!(
            store.open_alarm(&t, Some(&d), "overheat").await.unwrap(),
            Some(a.clone())
        );
        a.state = AlarmState::Acknowledged;
        a.acknowledged_by = Some("user:a@b.c".into());
        a.acknowledged_at = Some(11);
        a.count = 2;
        a.last_seen = 12;
        a.severity = Severity::Critical;
        a.details = json!({"temp": 99});
        assert_eq!(store.save_alarm(&a).await.unwrap(), Some(a.id));
        assert_eq!(store.get_alarm(&t, a.id).await.unwrap(), a);
        assert_eq!(store.count_open_alarms(&t).await.unwrap(), 1);
        a.state = AlarmState::Cleared;
        a.cleared_by = Some("rule:r1".into());
        a.cleared_at = Some(13);
        store.save_alarm(&a).await.unwrap();
        assert_eq!(store.get_alarm(&t, a.id).await.unwrap(), a);
        assert_eq!(
            store.open_alarm(&t, Some(&d), "overheat").await.unwrap(),
            None
        );
        assert_eq!(store.count_open_alarms(&t).await.unwrap(), 0);
        let other = TenantId::new("other").unwrap();
        assert!(matches!(
            store.get_alarm(&other, a.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.get_alarm(&t, u64::MAX).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn only_one_open_alarm_per_device_and_type() {
        let (store, _dir, t, d) = store_with_device().await;
        let first = insert(&store, &alarm(&t, Some(&d), "overheat", 1)).await;
        assert!(matches!(
            store.save_alarm(&alarm(&t, Some(&d), "overheat", 2)).await,
            Err(StoreError::Conflict { .. })
        ));
        // Device-less alarms dedupe among themselves too.
        insert(&store, &alarm(&t, None, "overheat", 3)).await;
        assert!(matches!(
            store.save_alarm(&alarm(&t, None, "overheat", 4)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            store
                .open_alarm(&t, None, "overheat")
                .await
                .unwrap()
                .unwrap()
                .last_seen,
            3
        );
        // Once cleared, the same device and type may raise anew.
        let cleared = AlarmRecord {
            state: AlarmState::Cleared,
            cleared_at: Some(5),
            ..first
        };
        store.save_alarm(&cleared).await.unwrap();
        let again = insert(&store, &alarm(&t, Some(&d), "overheat", 6)).await;
        assert_ne!(again.id, cleared.id);
        assert_eq!(store.count_open_alarms(&t).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_last_seen_first() {
        let (store, _dir, t, d) = store_with_device().await;
        let a = insert(&store, &alarm(&t, Some(&d), "a", 10)).await;
        let b = insert(&store, &alarm(&t, Some(&d), "b", 30)).await;
        let c = insert(
            &store,
            &AlarmRecord {
                severity: Severity::Critical,
                ..alarm(&t, None, "c", 20)
            },
        )
        .await;
        // Same last_seen as c: the higher id comes first.
        let e = insert(&store, &alarm(&t, None, "e", 20)).await;
        store
            .save_alarm(&AlarmRecord {
                state: AlarmState::Cleared,
                ..a.clone()
            })
            .await
            .unwrap();
        let all = |limit, after| PageRequest { limit, after };
        let none = AlarmFilter::default();
        let p1 = store.list_alarms(&t, &none, &all(2, None)).await.unwrap();
        assert_eq!(ids(&p1), [b.id, e.id]);
        let p2 = store
            .list_alarms(&t, &none, &all(2, p1.next))
            .await
            .unwrap();
        assert_eq!(ids(&p2), [c.id, a.id]);
        assert_eq!(p2.next, None);
        let by = |f: AlarmFilter| {
            let store = store.clone();
            let t = t.clone();
            async move {
                ids(&store
                    .list_alarms(
                        &t,
                        &f,
                        &PageRequest {
                            limit: 100,
                            after: None,
                        },
                    )
                    .await
                    .unwrap())
            }
        };
        assert_eq!(
            by(AlarmFilter {
                device: Some(d.clone()),
                ..none.clone()
            })
            .await,
            [b.id, a.id]
        );
        assert_eq!(
            by(AlarmFilter {
                state: Some(AlarmState::Cleared),
                ..none.clone()
            })
            .await,
            [a.id]
        );
        assert_eq!(
            by(AlarmFilter {
                severity: Some(Severity::Critical),
                ..none.clone()
            })
            .await,
            [c.id]
        );
        assert_eq!(
            by(AlarmFilter {
                alarm_type: Some("e".into()),
                ..none.clone()
            })
            .await,
            [e.id]
        );
        assert_eq!(
            by(AlarmFilter {
                from: Some(20),
                to: Some(30),
                ..none.clone()
            })
            .await,
            [e.id, c.id]
        );
        // Another tenant sees none of them; a bad cursor starts over.
        let other = TenantId::new("other").unwrap();
        assert!(
            store
                .list_alarms(&other, &none, &all(10, None))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let junk = store
            .list_alarms(&t, &none, &all(10, Some("junk".into())))
            .await
            .unwrap();
        assert_eq!(junk.items.len(), 4);
    }

    #[tokio::test]
    async fn alarms_go_with_their_device_and_tenant() {
        let (store, _dir, t, d) = store_with_device().await;
        let on_device = insert(&store, &alarm(&t, Some(&d), "a", 1)).await;
        let deviceless = insert(&store, &alarm(&t, None, "a", 1)).await;
        store.delete_device(&t, &d).await.unwrap();
        assert!(matches!(
            store.get_alarm(&t, on_device.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.get_alarm(&t, deviceless.id).await.is_ok());
        // Writes about the gone device are dropped, not errors.
        assert_eq!(store.save_alarm(&on_device).await.unwrap(), None);
        assert_eq!(
            store
                .save_alarm(&alarm(&t, Some(&d), "b", 2))
                .await
                .unwrap(),
            None
        );
        assert!(!store.alarm_device_exists(&t, &d).await.unwrap());
        store.delete_tenant(&t).await.unwrap();
        assert!(matches!(
            store.get_alarm(&t, deviceless.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

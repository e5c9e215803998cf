//! [`DeadLetterStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::TenantId;
use rusqlite::{OptionalExtension, Row, params};

use super::EmbeddedStore;
use crate::dead_letters::{DeadLetter, DeadLetterStore};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str = "tenant, id, rule, rule_version, action, request, error, attempts, \
                    created_at, replayed_at";

/// A row as SQLite gives it; turned into a letter (which may fail) after.
type RawRow = (
    String,
    i64,
    String,
    i64,
    i64,
    String,
    String,
    i64,
    i64,
    Option<i64>,
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

fn letter(row: RawRow) -> Result<DeadLetter> {
    let bad = |what: String| StoreError::backend("dead letter", what);
    let (tenant, id, rule, version, action, request, error, attempts, created, replayed) = row;
    Ok(DeadLetter {
        tenant: TenantId::new(tenant).map_err(|e| bad(e.to_string()))?,
        id: id as u64,
        rule,
        rule_version: version as u64,
        action: u32::try_from(action).map_err(|e| bad(e.to_string()))?,
        request: serde_json::from_str(&request).map_err(|e| bad(e.to_string()))?,
        error,
        attempts: u32::try_from(attempts).map_err(|e| bad(e.to_string()))?,
        created_at: created,
        replayed_at: replayed,
    })
}

#[async_trait]
impl DeadLetterStore for EmbeddedStore {
    async fn add_dead_letter(&self, l: &DeadLetter) -> Result<Option<u64>> {
        let l = l.clone();
        self.write(move |tx| {
            // The rule may have been deleted while its call was retried:
            // the letter goes with it.
            let rule_exists = tx
                .prepare_cached("SELECT 1 FROM rules WHERE tenant = ?1 AND id = ?2")?
                .exists(params![l.tenant.as_str(), l.rule])?;
            if !rule_exists {
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO rule_dead_letters
                    (tenant, rule, rule_version, action, request, error, attempts, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                l.tenant.as_str(),
                l.rule,
                l.rule_version as i64,
                l.action,
                l.request.to_string(),
                l.error,
                l.attempts,
                l.created_at,
            ])?;
            Ok(Some(tx.last_insert_rowid() as u64))
        })
        .await
    }

    async fn get_dead_letter(&self, tenant: &TenantId, id: u64) -> Result<DeadLetter> {
        let tenant = tenant.clone();
        let Ok(id) = i64::try_from(id) else {
            return Err(StoreError::NotFound {
                kind: "dead letter",
            });
        };
        self.read(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM rule_dead_letters WHERE tenant = ?1 AND id = ?2"
                ))?
                .query_row(params![tenant.as_str(), id], raw)
                .optional()?;
            row.map(letter).transpose()?.ok_or(StoreError::NotFound {
                kind: "dead letter",
            })
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        rule: &str,
        page: &PageRequest,
    ) -> Result<Page<DeadLetter>> {
        let (tenant, rule, page) = (tenant.clone(), rule.to_owned(), page.clone());
        // The cursor is the last id seen; anything unparsable starts over.
        let before = page
            .after
            .as_deref()
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM rule_dead_letters
                 WHERE tenant = ?1 AND rule = ?2 AND id < ?3
                 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![tenant.as_str(), rule, before, limit as i64 + 1],
                raw,
            )?;
            let mut items = rows
                .map(|r| letter(r?))
                .collect::<Result<Vec<DeadLetter>>>()?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|l| l.id.to_string())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn record_replay(
        &self,
        tenant: &TenantId,
        id: u64,
        outcome: std::result::Result<i64, (String, u32)>,
    ) -> Result<()> {
        let tenant = tenant.clone();
        let id = i64::try_from(id).unwrap_or(-1);
        self.write(move |tx| {
            let changed = match outcome {
                Ok(at) => tx.execute(
                    "UPDATE rule_dead_letters SET replayed_at = ?3 WHERE tenant = ?1 AND id = ?2",
                    params![tenant.as_str(), id, at],
                )?,
                Err((error, attempts)) => tx.execute(
                    "UPDATE rule_dead_letters SET error = ?3, attempts = attempts + ?4
                     WHERE tenant = ?1 AND id = ?2",
                    params![tenant.as_str(), id, error, attempts],
                )?,
            };
            if changed == 0 {
                return Err(StoreError::NotFound {
                    kind: "dead letter",
                });
            }
            Ok(())
        })
        .await
    }

    async fn delete_dead_letter(&self, tenant: &TenantId, id: u64) -> Result<()> {
        let tenant = tenant.clone();
        let id = i64::try_from(id).unwrap_or(-1);
        self.write(move |tx| {
            let deleted = tx.execute(
                "DELETE FROM rule_dead_letters WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            if deleted == 0 {
                return Err(StoreError::NotFound {
                    kind: "dead letter",
                });
            }
            Ok(())
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

    /// Rules come from the rule store; a row is enough for the foreign key.
    async fn add_rule(store: &EmbeddedStore, t: &TenantId, rule: &str) {
        let (t, rule) = (t.clone(), rule.to_owned());
        store
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO rules (tenant, id, name, description, sql, actions, enabled,
                        version, created_at, updated_at)
                     VALUES (?1, ?2, ?2, '', 'SELECT * FROM ''#''', '[]', 1, 1, 0, 0)",
                    params![t.as_str(), rule],
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }

    fn letter_of(t: &TenantId, rule: &str, n: u32) -> DeadLetter {
        DeadLetter {
            tenant: t.clone(),
            id: 0,
            rule: rule.into(),
            rule_version: 3,
            action: 1,
            request: json!({"method": "POST", "url": "https://example.com/", "headers": [], "body": format!("{n}")}),
            error: "HTTP 500 Internal Server Error".into(),
            attempts: 4,
            created_at: 1_000 + i64::from(n),
            replayed_at: None,
        }
    }

    #[tokio::test]
    async fn dead_letters_are_kept_newest_first_replayed_and_deleted() {
        let (store, _dir, t, _d) = store_with_device().await;
        add_rule(&store, &t, "r1").await;
        add_rule(&store, &t, "r2").await;
        let mut ids = Vec::new();
        for n in 1..=3 {
            ids.push(
                store
                    .add_dead_letter(&letter_of(&t, "r1", n))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        store
            .add_dead_letter(&letter_of(&t, "r2", 9))
            .await
            .unwrap()
            .unwrap();
        let got = store.get_dead_letter(&t, ids[0]).await.unwrap();
        assert_eq!(
            got,
            DeadLetter {
                id: ids[0],
                ..letter_of(&t, "r1", 1)
            }
        );

        let page = PageRequest {
            limit: 2,
            after: None,
        };
        let first = store.list_dead_letters(&t, "r1", &page).await.unwrap();
        assert_eq!(
            first.items.iter().map(|l| l.id).collect::<Vec<_>>(),
            [ids[2], ids[1]]
        );
        let rest = store
            .list_dead_letters(
                &t,
                "r1",
                &PageRequest {
                    limit: 2,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            rest.items.iter().map(|l| l.id).collect::<Vec<_>>(),
            [ids[0]]
        );
        assert_eq!(rest.next, None);

        store
            .record_replay(&t, ids[0], Err(("HTTP 503".into(), 1)))
            .await
            .unwrap();
        let failed = store.get_dead_letter(&t, ids[0]).await.unwrap();
        assert_eq!((failed.error.as_str(), failed.attempts), ("HTTP 503", 5));
        assert_eq!(failed.replayed_at, None);
        store.record_replay(&t, ids[0], Ok(7_777)).await.unwrap();
        assert_eq!(
            store.get_dead_letter(&t, ids[0]).await.unwrap().replayed_at,
            Some(7_777)
        );

        store.delete_dead_letter(&t, ids[1]).await.unwrap();
        assert!(matches!(
            store.get_dead_letter(&t, ids[1]).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.delete_dead_letter(&t, ids[1]).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.record_replay(&t, u64::MAX, Ok(1)).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn dead_letters_are_the_tenants_and_go_with_their_rule() {
        let (store, _dir, t, _d) = store_with_device().await;
        let other = TenantId::new("other").unwrap();
        store.create_tenant(&other, "O").await.unwrap();
        add_rule(&store, &t, "r1").await;
        let id = store
            .add_dead_letter(&letter_of(&t, "r1", 1))
            .await
            .unwrap()
            .unwrap();
        // Another tenant sees nothing, changes nothing.
        assert!(matches!(
            store.get_dead_letter(&other, id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.delete_dead_letter(&other, id).await.is_err());
        assert!(store.record_replay(&other, id, Ok(1)).await.is_err());
        let page = PageRequest {
            limit: 10,
            after: None,
        };
        assert!(
            store
                .list_dead_letters(&other, "r1", &page)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        // A letter of a rule that is gone is dropped.
        assert_eq!(
            store
                .add_dead_letter(&letter_of(&t, "gone", 1))
                .await
                .unwrap(),
            None
        );
        // Deleting the rule deletes its letters.
        let t2 = t.clone();
        store
            .write(move |tx| {
                tx.execute("DELETE FROM rules WHERE tenant = ?1", params![t2.as_str()])?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(store.get_dead_letter(&t, id).await.is_err());
        // And the tenant's deletion, everything.
        add_rule(&store, &t, "r1").await;
        let id = store
            .add_dead_letter(&letter_of(&t, "r1", 2))
            .await
            .unwrap()
            .unwrap();
        store.delete_tenant(&t).await.unwrap();
        assert!(store.get_dead_letter(&t, id).await.is_err());
    }
}

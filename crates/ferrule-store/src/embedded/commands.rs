//! [`CommandStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use rusqlite::{OptionalExtension, Row, params};

use super::EmbeddedStore;
use crate::commands::{CommandRecord, CommandState, CommandStore};
use crate::{Page, PageRequest, Result, StoreError};

const COLS: &str = "tenant, device, id, seq, name, params, state, requested_by, created_at, \
                    expires_at, delivered_at, finished_at, response, error";

/// A row as SQLite gives it; turned into a record (which may fail) after.
type RawRow = (
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
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
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
    ))
}

fn record(row: RawRow) -> Result<CommandRecord> {
    let bad = |what: String| StoreError::backend("command", what);
    let (
        tenant,
        device,
        id,
        seq,
        name,
        params,
        state,
        by,
        created,
        expires,
        delivered,
        finished,
        response,
        error,
    ) = row;
    Ok(CommandRecord {
        tenant: TenantId::new(tenant).map_err(|e| bad(e.to_string()))?,
        device: DeviceId::new(device).map_err(|e| bad(e.to_string()))?,
        id,
        seq: seq as u64,
        name,
        params: serde_json::from_str(&params).map_err(|e| bad(e.to_string()))?,
        state: CommandState::parse(&state).ok_or_else(|| bad(format!("unknown state {state}")))?,
        requested_by: by,
        created_at: created,
        expires_at: expires,
        delivered_at: delivered,
        finished_at: finished,
        response: response
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        error,
    })
}

fn collect(rows: impl Iterator<Item = rusqlite::Result<RawRow>>) -> Result<Vec<CommandRecord>> {
    rows.map(|r| record(r?)).collect()
}

#[async_trait]
impl CommandStore for EmbeddedStore {
    async fn save_commands(&self, commands: Vec<CommandRecord>) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            let mut exists =
                tx.prepare_cached("SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2")?;
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO commands ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (tenant, id) DO UPDATE SET
                    state = excluded.state, delivered_at = excluded.delivered_at,
                    finished_at = excluded.finished_at, response = excluded.response,
                    error = excluded.error, expires_at = excluded.expires_at"
            ))?;
            for c in commands {
                if !exists.exists(params![c.tenant.as_str(), c.device.as_str()])? {
                    continue;
                }
                upsert.execute(params![
                    c.tenant.as_str(),
                    c.device.as_str(),
                    c.id,
                    c.seq as i64,
                    c.name,
                    c.params.to_string(),
                    c.state.as_str(),
                    c.requested_by,
                    c.created_at,
                    c.expires_at,
                    c.delivered_at,
                    c.finished_at,
                    c.response.as_ref().map(|r| r.to_string()),
                    c.error,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn get_command(&self, tenant: &TenantId, id: &str) -> Result<Option<CommandRecord>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM commands WHERE tenant = ?1 AND id = ?2"
                ))?
                .query_row(params![tenant.as_str(), id], raw)
                .optional()?;
            row.map(record).transpose()
        })
        .await
    }

    async fn list_commands(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        state: Option<CommandState>,
        page: &PageRequest,
    ) -> Result<Page<CommandRecord>> {
        let (tenant, device, page) = (tenant.clone(), device.clone(), page.clone());
        // The cursor is the last seq seen; anything unparsable starts over.
        let before = page
            .after
            .as_deref()
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        self.read(move |c| {
            let limit = page.limit.max(1) as usize;
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM commands
                 WHERE tenant = ?1 AND device = ?2 AND seq < ?3 AND (?4 IS NULL OR state = ?4)
                 ORDER BY seq DESC LIMIT ?5"
            ))?;
            let rows = st.query_map(
                params![
                    tenant.as_str(),
                    device.as_str(),
                    before,
                    state.map(CommandState::as_str),
                    limit as i64 + 1
                ],
                raw,
            )?;
            let mut items = collect(rows)?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|c| c.seq.to_string())
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn open_commands(&self) -> Result<Vec<CommandRecord>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM commands WHERE state IN ('pending', 'delivered') ORDER BY seq"
            ))?;
            let rows = st.query_map([], raw)?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                let what = format!("tenant {}, command {}", row.0, row.2);
                if let Some(c) = crate::unreadable::skip("commands", || what, record(row)) {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn last_command_seq(&self) -> Result<u64> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT coalesce(max(seq), 0) FROM commands", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    async fn prune_commands(&self, tenant: &TenantId, before: i64) -> Result<u64> {
        let tenant = tenant.clone();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM commands WHERE tenant = ?1 AND finished_at IS NOT NULL AND finished_at < ?2",
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

    fn command(t: &TenantId, d: &DeviceId, seq: u64, state: CommandState) -> CommandRecord {
        CommandRecord {
            tenant: t.clone(),
            device: d.clone(),
            id: format!("c{seq}"),
            seq,
            name: "reboot".into(),
            params: json!({"delay": seq}),
            state,
            requested_by: "user:u".into(),
            created_at: seq as i64,
            expires_at: 1000,
            delivered_at: None,
            finished_at: state.is_final().then_some(seq as i64),
            response: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn commands_keep_their_state_order_and_go_with_the_device() {
        let (store, _dir, t, d) = store_with_device().await;
        let mut all: Vec<_> = (1..=3)
            .map(|s| command(&t, &d, s, CommandState::Pending))
            .collect();
        store.save_commands(all.clone()).await.unwrap();
        all[0].state = CommandState::Succeeded;
        all[0].finished_at = Some(5);
        all[0].response = Some(json!({"ok": true}));
        store.save_commands(vec![all[0].clone()]).await.unwrap();
        assert_eq!(
            store.get_command(&t, "c1").await.unwrap(),
            Some(all[0].clone())
        );
        assert_eq!(store.last_command_seq().await.unwrap(), 3);
        let open = store.open_commands().await.unwrap();
        assert_eq!(open.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3]);
        let page = PageRequest {
            limit: 2,
            after: None,
        };
        let first = store.list_commands(&t, &d, None, &page).await.unwrap();
        assert_eq!(
            first.items.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [3, 2]
        );
        let rest = store
            .list_commands(
                &t,
                &d,
                None,
                &PageRequest {
                    limit: 2,
                    after: first.next,
                },
            )
            .await
            .unwrap();
        assert_eq!(rest.items.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
        let done = store
            .list_commands(&t, &d, Some(CommandState::Succeeded), &page)
            .await
            .unwrap();
        assert_eq!(done.items.len(), 1);
        assert_eq!(store.prune_commands(&t, 6).await.unwrap(), 1);
        store.delete_device(&t, &d).await.unwrap();
        assert!(store.open_commands().await.unwrap().is_empty());
        store
            .save_commands(vec![command(&t, &d, 4, CommandState::Pending)])
            .await
            .unwrap();
        assert_eq!(store.get_command(&t, "c4").await.unwrap(), None);
    }
}

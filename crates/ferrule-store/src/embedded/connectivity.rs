//! [`ConnectivityStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::{DeviceId, TenantId};
use rusqlite::params;

use super::EmbeddedStore;
use crate::{ConnectivityStore, DeviceConnectivity, Result};

#[async_trait]
impl ConnectivityStore for EmbeddedStore {
    async fn save_connectivity(
        &self,
        states: Vec<(TenantId, DeviceId, DeviceConnectivity)>,
    ) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        self.write(move |tx| {
            // Only for devices that exist: a device deleted since its event
            // has no row to keep (and the foreign key would refuse it).
            let mut st = tx.prepare_cached(
                "INSERT INTO device_connectivity (tenant, device, online, last_seen,
                     connected_at, disconnected_at, client_id, client_address, protocol, last_reason)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
                 WHERE EXISTS (SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2)
                 ON CONFLICT (tenant, device) DO UPDATE SET
                     online = excluded.online, last_seen = excluded.last_seen,
                     connected_at = excluded.connected_at,
                     disconnected_at = excluded.disconnected_at,
                     client_id = excluded.client_id, client_address = excluded.client_address,
                     protocol = excluded.protocol, last_reason = excluded.last_reason",
            )?;
            for (tenant, device, c) in &states {
                st.execute(params![
                    tenant.as_str(),
                    device.as_str(),
                    c.online,
                    c.last_seen,
                    c.connected_at,
                    c.disconnected_at,
                    c.client_id,
                    c.client_address,
                    c.protocol,
                    c.last_reason,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn load_connectivity(&self) -> Result<Vec<(TenantId, DeviceId, DeviceConnectivity)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT tenant, device, online, last_seen, connected_at, disconnected_at,
                        client_id, client_address, protocol, last_reason
                 FROM device_connectivity",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    DeviceConnectivity {
                        online: r.get(2)?,
                        last_seen: r.get(3)?,
                        connected_at: r.get(4)?,
                        disconnected_at: r.get(5)?,
                        client_id: r.get(6)?,
                        client_address: r.get(7)?,
                        protocol: r.get(8)?,
                        last_reason: r.get(9)?,
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (tenant, device, state) = row?;
                let what = format!("tenant {tenant}, device {device}");
                let ids = TenantId::new(tenant)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        DeviceId::new(device)
                            .map(|d| (t, d))
                            .map_err(|e| e.to_string())
                    });
                if let Some((tenant, device)) =
                    crate::unreadable::skip("device_connectivity", || what, ids)
                {
                    out.push((tenant, device, state));
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetaStore, NewDevice};

    #[tokio::test]
    async fn a_device_state_reads_back_and_a_missing_device_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let tenant = TenantId::new("a").unwrap();
        let device = DeviceId::new("pump-1").unwrap();
        store.create_tenant(&tenant, "A").await.unwrap();
        store
            .create_device(&NewDevice {
                tenant: tenant.clone(),
                id: device.clone(),
                name: "Pump".into(),
                profile: "default".into(),
                attributes: serde_json::json!({}),
            })
            .await
            .unwrap();
        let state = DeviceConnectivity {
            online: true,
            last_seen: Some(5),
            connected_at: Some(4),
            client_id: Some("c".into()),
            client_address: Some("127.0.0.1:9".into()),
            protocol: Some("5.0".into()),
            last_reason: Some("takeover".into()),
            ..Default::default()
        };
        let ghost = DeviceId::new("ghost").unwrap();
        store
            .save_connectivity(vec![
                (tenant.clone(), device.clone(), state.clone()),
                (tenant.clone(), ghost, state.clone()),
            ])
            .await
            .unwrap();
        let offline = DeviceConnectivity {
            online: false,
            ..state.clone()
        };
        store
            .save_connectivity(vec![(tenant.clone(), device.clone(), offline.clone())])
            .await
            .unwrap();
        assert_eq!(
            store.load_connectivity().await.unwrap(),
            vec![(tenant.clone(), device.clone(), offline)]
        );
        // The device's deletion takes its state along.
        store.delete_device(&tenant, &device).await.unwrap();
        assert!(store.load_connectivity().await.unwrap().is_empty());
    }
}

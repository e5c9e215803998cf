//! The embedded backend: SQLite files in the data directory.
//!
//! One writer connection and a small pool of readers, all in WAL mode; every
//! call runs on tokio's blocking pool so SQLite never stalls the async threads.

mod alarms;
mod apps;
mod broker_state;
mod commands;
mod connectivity;
mod dashboards;
mod dead_letters;
mod meta;
mod migrations;
mod profiles;
mod rules;
mod tenant_import;
mod twin;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use migrations::{SCHEMA_VERSION, pending_migrations, schema_version};
pub use tenant_import::extract_tenant_id;

use crate::{Result, StoreError};

/// Readers beside the writer: enough for the API and MQTT auth to overlap.
const READERS: usize = 4;

/// File name of the metadata database inside the data directory.
pub const META_DB: &str = "meta.db";

/// The embedded metadata store.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` and brings its schema up
    /// to date. Refuses a data directory written by a newer binary.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::backend(format!("create {}", dir.display()), e))?;
        let path = dir.join(META_DB);
        let mut writer = open_connection(&path)?;
        migrations::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a reader connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = lock(&inner.readers[i]);
            f(&conn)
        })
        .await
    }

    /// Runs `f` in a transaction on the writer connection, off the async threads.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::backend(format!("open {}", path.display()), e))?;
    // FULL: a 2xx from the API means the change survives power loss, not only
    // a process crash. Metadata writes are rare enough to afford it.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    Ok(conn)
}

/// A poisoned lock only means another call panicked mid-statement; SQLite's
/// transaction rolled back, so the connection is still sound.
fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend("store task failed", e))?
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A store with tenant `t` and its device `d`.
    pub(crate) async fn store_with_device() -> (
        EmbeddedStore,
        tempfile::TempDir,
        ferrule_core::TenantId,
        ferrule_core::DeviceId,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let t = ferrule_core::TenantId::new("t").unwrap();
        let d = ferrule_core::DeviceId::new("d").unwrap();
        use crate::MetaStore;
        store.create_tenant(&t, "T").await.unwrap();
        store
            .create_device(&crate::NewDevice {
                tenant: t.clone(),
                id: d.clone(),
                name: "d".into(),
                profile: "default".into(),
                attributes: serde_json::json!({}),
            })
            .await
            .unwrap();
        (store, dir, t, d)
    }

    crate::meta_store_conformance!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        // Keep the directory alive as long as the store.
        (store, dir)
    });

    mod broker_state_of_deleted {
        use bytes::Bytes;
        use ferrule_core::stored::{StoredMessage, StoredSession};
        use ferrule_core::{DeviceId, PrincipalKind, QoS, TenantId};

        use super::*;
        use crate::{BrokerStateStore, MetaStore, NewDevice};

        fn session(tenant: &TenantId, owner: &str) -> StoredSession {
            StoredSession {
                tenant: tenant.clone(),
                owner: owner.into(),
                client_id: "c".into(),
                expires_at_ms: i64::MAX / 2,
                expiry_secs: 3600,
                subscriptions: Vec::new(),
                deliveries: Vec::new(),
                inbound_qos2: Vec::new(),
            }
        }

        fn retained(topic: &str) -> StoredMessage {
            StoredMessage {
                topic: topic.into(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: None,
                expires_at_ms: None,
                origin_client: None,
                received_at_ms: 0,
            }
        }

        async fn setup() -> (EmbeddedStore, tempfile::TempDir, TenantId, TenantId) {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
            for t in [&a, &b] {
                store.create_tenant(t, "T").await.unwrap();
                for d in ["pump", "pump2"] {
                    store
                        .create_device(&NewDevice {
                            tenant: t.clone(),
                            id: DeviceId::new(d).unwrap(),
                            name: d.into(),
                            profile: "default".into(),
                            attributes: serde_json::json!({}),
                        })
                        .await
                        .unwrap();
                }
                let sessions = ["device:pump", "device:pump2", "user:u1"]
                    .iter()
                    .map(|o| session(t, o))
                    .collect();
                let topics = [
                    "devices/pump",
                    "devices/pump/state",
                    "devices/pump/a/b",
                    "devices/pump2/state",
                    "devices/pump.x",
                    "other/devices/pump",
                ];
                let kept = topics.iter().map(|x| (t.clone(), retained(x))).collect();
                store
                    .save_broker_state(sessions, Vec::new(), kept, Vec::new())
                    .await
                    .unwrap();
            }
            (store, dir, a, b)
        }

        async fn left(store: &EmbeddedStore, t: &TenantId) -> (Vec<String>, Vec<String>) {
            let owners = store
                .load_sessions()
                .await
                .unwrap()
                .into_iter()
                .filter(|s| &s.tenant == t)
                .map(|s| s.owner)
                .collect();
            let topics = store
                .load_retained()
                .await
                .unwrap()
                .into_iter()
                .filter(|(x, _)| x == t)
                .map(|(_, m)| m.topic)
                .collect();
            (owners, topics)
        }

        #[tokio::test]
        async fn deleting_a_device_removes_its_sessions_and_its_retained_topic_space() {
            let (store, _dir, a, b) = setup().await;
            let pump = DeviceId::new("pump").unwrap();
            store.delete_device(&a, &pump).await.unwrap();
            let (owners, topics) = left(&store, &a).await;
            assert_eq!(owners, ["device:pump2", "user:u1"]);
            assert_eq!(
                topics,
                [
                    "devices/pump.x",
                    "devices/pump2/state",
                    "other/devices/pump"
                ]
            );
            assert_eq!(PrincipalKind::device_owner(&pump), "device:pump");
            let (owners, topics) = left(&store, &b).await;
            assert_eq!((owners.len(), topics.len()), (3, 6), "tenant b untouched");
        }

        #[tokio::test]
        async fn deleting_a_tenant_removes_all_its_broker_state() {
            let (store, _dir, a, b) = setup().await;
            store.delete_tenant(&a).await.unwrap();
            assert_eq!(left(&store, &a).await, (Vec::new(), Vec::new()));
            let (owners, topics) = left(&store, &b).await;
            assert_eq!((owners.len(), topics.len()), (3, 6), "tenant b untouched");
        }
    }
}

use std::path::Path;

use bytes::Bytes;
use ferrule_core::telemetry::{Reading, TelemetryValue};
use ferrule_core::{DeviceId, Durability, Role, TenantId};

use super::*;
use crate::embedded::EmbeddedStore;
use crate::telemetry::embedded::{EmbeddedTelemetry, TelemetryOptions};
use crate::telemetry::{
    EventQuery, NewEvent, Order, Range, RetentionSettings, SeriesQuery, TelemetryStore,
};
use crate::{CredentialKind, MetaStore, NewCredential, NewDevice, NewUser};

struct Instance {
    store: EmbeddedStore,
    telemetry: EmbeddedTelemetry,
    _dir: tempfile::TempDir,
}

impl Instance {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let telemetry = EmbeddedTelemetry::open(
            dir.path(),
            TelemetryOptions::default(),
            Durability::default(),
        )
        .unwrap();
        Instance {
            store,
            telemetry,
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn target(&self) -> TenantImport<'_> {
        TenantImport {
            store: &self.store,
            telemetry: &self.telemetry,
        }
    }

    /// Tenant `t` with device `pump` (token hash `token-{t}`), a user, and
    /// telemetry: `temp` sealed in chunks and `note` still in the log.
    async fn tenant(&self, t: &str, marker: &str) {
        let tenant = TenantId::new(t).unwrap();
        let pump = DeviceId::new("pump").unwrap();
        self.store.create_tenant(&tenant, marker).await.unwrap();
        self.store
            .create_device(&NewDevice {
                tenant: tenant.clone(),
                id: pump.clone(),
                name: format!("{marker}-device"),
                profile: "default".into(),
                attributes: serde_json::json!({ "where": marker }),
            })
            .await
            .unwrap();
        self.store
            .add_credential(
                &tenant,
                &pump,
                &NewCredential {
                    id: format!("cred-{t}"),
                    kind: CredentialKind::Token,
                    secret_hash: Some(format!("token-{t}")),
                    fingerprint: None,
                    expires_at: None,
                },
            )
            .await
            .unwrap();
        self.store
            .create_user(&NewUser {
                id: format!("user-{t}"),
                tenant: tenant.clone(),
                email: format!("{marker}@example.com"),
                role: Role::Owner,
                password_hash: "hash".into(),
            })
            .await
            .unwrap();
        let reading = |ts, key: &str, value| Reading {
            ts,
            key: key.into(),
            value,
            server_stamped: false,
        };
        let sealed = (0..10)
            .map(|i| reading(1_000 + i, "temp", TelemetryValue::Number(i as f64)))
            .collect();
        let event = NewEvent {
            ts: 1_000,
            event_type: "boot".into(),
            payload: Bytes::from(format!("{marker}-event")),
        };
        self.telemetry
            .append(&tenant, &pump, sealed, vec![event])
            .unwrap();
        self.telemetry.seal_all().await.unwrap();
        let recent = vec![reading(
            2_000,
            "note",
            TelemetryValue::Text(format!("{marker}-note").into()),
        )];
        self.telemetry
            .append(&tenant, &pump, recent, Vec::new())
            .unwrap();
        // A control request: what was queued before it is committed.
        self.telemetry
            .set_retention(
                &tenant,
                RetentionSettings {
                    default_days: Some(400),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
}

fn id(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

async fn points(i: &Instance, t: &str, key: &str) -> Vec<(i64, TelemetryValue)> {
    let q = SeriesQuery::new(&id(t), &DeviceId::new("pump").unwrap(), key, Range::ALL);
    i.telemetry
        .raw(q, Order::Oldest, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.ts, p.value))
        .collect()
}

/// A tenant extract of `source`'s tenant `t` in a fresh directory.
fn extract(source: &Instance, t: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    archive_tenant(source.dir(), &id(t), out.path()).unwrap();
    out
}

/// The importer works on its own copy of the extract.
fn copy(extract: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    for f in ["meta.db", "telemetry.db"] {
        std::fs::copy(extract.join(f), out.path().join(f)).unwrap();
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_extract_holds_its_tenant_and_nothing_of_another() {
    let source = Instance::open();
    source.tenant("a", "alpha-marker").await;
    source.tenant("b", "bravo-marker").await;
    let out = extract(&source, "a");
    for f in ["meta.db", "telemetry.db"] {
        let bytes = std::fs::read(out.path().join(f)).unwrap();
        assert!(!contains(&bytes, "bravo-marker"), "{f} leaks tenant b");
        assert!(!contains(&bytes, "token-b"), "{f} leaks b's token hash");
        assert!(!out.path().join(format!("{f}-wal")).exists());
    }
    let meta = std::fs::read(out.path().join("meta.db")).unwrap();
    assert!(contains(&meta, "alpha-marker-device"));
    let telemetry = std::fs::read(out.path().join("telemetry.db")).unwrap();
    assert!(
        contains(&telemetry, "alpha-marker-note"),
        "recent points travel"
    );
}

#[tokio::test]
async fn a_moved_tenant_keeps_its_token_history_and_settings() {
    let source = Instance::open();
    source.tenant("a", "alpha").await;
    source.tenant("b", "bravo").await;
    let target = Instance::open();
    // The target's own series and events take the low ids.
    target.tenant("c", "charlie").await;
    let out = extract(&source, "a");
    let moved = import_tenant(target.target(), copy(out.path()).path(), None)
        .await
        .unwrap();
    assert_eq!((moved.from.as_str(), moved.tenant.as_str()), ("a", "a"));
    assert_eq!(moved.rows["devices"], 1);
    assert_eq!(moved.rows["users"], 1);
    assert_eq!((moved.series, moved.points, moved.events), (2, 11, 1));
    let login = target
        .store
        .find_device_by_token("token-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (login.tenant.as_str(), login.device.as_str()),
        ("a", "pump")
    );
    assert_eq!(points(&target, "a", "temp").await.len(), 10);
    assert_eq!(
        points(&target, "a", "note").await,
        vec![(2_000, TelemetryValue::Text("alpha-note".into()))]
    );
    assert_eq!(
        points(&target, "c", "temp").await.len(),
        10,
        "target's own data intact"
    );
    let events = target
        .telemetry
        .events(EventQuery {
            tenant: id("a"),
            device: DeviceId::new("pump").unwrap(),
            event_type: None,
            range: Range::ALL,
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, b"alpha-event");
    assert_eq!(
        target
            .telemetry
            .retention(&id("a"))
            .await
            .unwrap()
            .default_days,
        Some(400)
    );
    assert!(target.telemetry.disk_bytes(&id("a")) > 0);
    // Recent points replay after a restart like any other.
    target.telemetry.close().await.unwrap();
    let reopened = EmbeddedTelemetry::open(
        target.dir(),
        TelemetryOptions::default(),
        Durability::default(),
    )
    .unwrap();
    let q = SeriesQuery::new(
        &id("a"),
        &DeviceId::new("pump").unwrap(),
        "note",
        Range::ALL,
    );
    assert_eq!(reopened.raw(q, Order::Oldest, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_existing_tenant_is_refused_and_nothing_changes() {
    let source = Instance::open();
    source.tenant("a", "alpha").await;
    let target = Instance::open();
    target.tenant("a", "other-alpha").await;
    let out = extract(&source, "a");
    let err = import_tenant(target.target(), copy(out.path()).path(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, MoveError::TenantExists(ref t) if t == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("--as NEW_ID"));
    assert_eq!(
        target.store.get_tenant(&id("a")).await.unwrap().name,
        "other-alpha"
    );
    assert_eq!(
        points(&target, "a", "temp").await.len(),
        10,
        "its telemetry untouched"
    );

    // Under another id, the same token cannot name two devices here.
    let err = import_tenant(target.target(), copy(out.path()).path(), Some(id("b")))
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::TokenTaken(_)), "{err}");
    assert!(target.store.get_tenant(&id("b")).await.is_err());
    assert!(points(&target, "b", "temp").await.is_empty());
}

#[tokio::test]
async fn renamed_with_as_every_tenant_reference_follows() {
    let source = Instance::open();
    source.tenant("a", "alpha").await;
    let target = Instance::open();
    let out = extract(&source, "a");
    let moved = import_tenant(target.target(), copy(out.path()).path(), Some(id("other")))
        .await
        .unwrap();
    assert_eq!(moved.tenant, "other");
    let login = target
        .store
        .find_device_by_token("token-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.tenant.as_str(), "other");
    assert!(target.store.get_tenant(&id("a")).await.is_err());
    assert_eq!(points(&target, "other", "temp").await.len(), 10);
    // Again into the same instance: the token is taken.
    let again = tempfile::tempdir().unwrap();
    archive_tenant(target.dir(), &id("other"), again.path()).unwrap();
    let err = import_tenant(
        target.target(),
        copy(again.path()).path(),
        Some(id("third")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, MoveError::EmailTaken(ref e) if e == "alpha@example.com"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(again.path().join("meta.db")).unwrap();
    conn.execute("DELETE FROM users", []).unwrap();
    drop(conn);
    let err = import_tenant(target.target(), again.path(), Some(id("third")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MoveError::TokenTaken(ref d) if d == "pump"),
        "{err}"
    );
    assert!(points(&target, "third", "temp").await.is_empty());
}

#[tokio::test]
async fn an_unknown_tenant_is_refused_by_name() {
    let source = Instance::open();
    let out = tempfile::tempdir().unwrap();
    let err = archive_tenant(source.dir(), &id("nope"), out.path()).unwrap_err();
    assert!(
        matches!(err, MoveError::NoSuchTenant(ref t) if t == "nope"),
        "{err}"
    );
}

#[tokio::test]
async fn an_archive_with_a_damaged_database_is_refused_before_anything_is_imported() {
    use crate::backup::archive::{ArchiveWriter, Manifest, Scope};
    let source = Instance::open();
    source.tenant("a", "alpha").await;
    let out = extract(&source, "a");
    let telemetry = out.path().join("telemetry.db");
    crate::backup::restore::damage_table(&telemetry, "series");
    let archive = out.path().join("a.ferrule-backup");
    let mut writer = ArchiveWriter::new(
        std::fs::File::create(&archive).unwrap(),
        &Manifest::new(
            Scope::Tenant("a".into()),
            crate::embedded::SCHEMA_VERSION,
            0,
            Default::default(),
        ),
    )
    .unwrap();
    writer
        .append_file("meta.db", &out.path().join("meta.db"))
        .unwrap();
    writer.append_file("telemetry.db", &telemetry).unwrap();
    writer.finish().unwrap();

    let unpacked = tempfile::tempdir().unwrap();
    let err = unpack_archive(&archive, unpacked.path()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, MoveError::Invalid(_)), "{message}");
    assert!(
        message.contains("its telemetry.db is damaged (SQLite's integrity check: "),
        "{message}"
    );
}

/// An archive may come from anywhere: a user or key with a role this
/// version does not know is refused by name, and nothing is imported.
#[tokio::test]
async fn an_archive_with_an_unknown_role_is_refused() {
    let source = Instance::open();
    source.tenant("a", "alpha").await;
    let target = Instance::open();
    let out = extract(&source, "a");
    let tampered = copy(out.path());
    let meta = rusqlite::Connection::open(tampered.path().join("meta.db")).unwrap();
    meta.execute("UPDATE users SET role = 'root'", []).unwrap();
    drop(meta);
    let err = import_tenant(target.target(), tampered.path(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, MoveError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("\"root\""), "{err}");
    assert!(target.store.get_tenant(&id("a")).await.is_err());
    assert!(points(&target, "a", "temp").await.is_empty());
}

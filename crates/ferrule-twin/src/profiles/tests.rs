use std::sync::Arc;

use bytes::Bytes;
use ferrule_bus::{Intake, Refused};
use ferrule_core::{DeviceId, Message, Origin, QoS, TenantId};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::{DeviceProfile, MetaStore, NewDevice, ProfileStore};
use serde_json::json;

use super::*;

fn profile(tenant: &TenantId, name: &str) -> DeviceProfile {
    let now = jiff::Timestamp::now();
    DeviceProfile {
        tenant: tenant.clone(),
        name: name.into(),
        description: String::new(),
        telemetry_schema: Some(json!({
            "type": "object",
            "properties": {"temp": {"type": "number", "maximum": 100}},
        })),
        state_schema: Some(json!({
            "type": "object",
            "properties": {"mode": {"enum": ["on", "off"]}},
        })),
        retention_days: Some(7),
        defaults: json!({}),
        created_at: now,
        updated_at: now,
    }
}

fn message(tenant: &TenantId, topic: &str, payload: &str) -> Arc<Message> {
    Arc::new(Message::new(
        tenant.clone(),
        topic.into(),
        Bytes::copy_from_slice(payload.as_bytes()),
        QoS::AtLeastOnce,
        Origin::Api,
    ))
}

async fn setup() -> (tempfile::TempDir, EmbeddedStore, TenantId) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let t = TenantId::new("acme").unwrap();
    store.create_tenant(&t, "Acme").await.unwrap();
    for (d, p) in [("pump", "pumps"), ("plain", "default")] {
        store
            .create_device(&NewDevice {
                tenant: t.clone(),
                id: DeviceId::new(d).unwrap(),
                name: d.into(),
                profile: p.into(),
                attributes: json!({}),
            })
            .await
            .unwrap();
    }
    (dir, store, t)
}

#[tokio::test]
async fn the_guard_refuses_what_breaks_the_profile_of_the_device_only() {
    let (_dir, store, t) = setup().await;
    store.create_profile(&profile(&t, "pumps")).await.unwrap();
    let profiles = Profiles::open(Arc::new(store)).await.unwrap();
    let guard = ProfileGuard::new(profiles.clone());
    let refused = guard
        .accept(&message(&t, "devices/pump/telemetry", r#"{"temp": 500}"#))
        .unwrap_err();
    assert_eq!(
        refused,
        Refused::Invalid("/temp: 500 is greater than the maximum of 100".into())
    );
    assert!(
        guard
            .accept(&message(&t, "devices/pump/telemetry", r#"{"temp": 50}"#))
            .is_ok()
    );
    let state = guard
        .accept(&message(
            &t,
            "devices/pump/state/reported",
            r#"{"mode": "fast"}"#,
        ))
        .unwrap_err();
    assert!(state.to_string().starts_with("/mode: "), "{state}");
    // Other devices, topics, tenants and payloads that are not JSON pass.
    for (tenant, topic, payload) in [
        (&t, "devices/plain/telemetry", r#"{"temp": 500}"#),
        (&t, "devices/pump/events/x", r#"{"temp": 500}"#),
        (&t, "devices/pump/telemetry", "not json"),
        (
            &TenantId::new("other").unwrap(),
            "devices/pump/telemetry",
            r#"{"temp": 500}"#,
        ),
    ] {
        assert!(
            guard.accept(&message(tenant, topic, payload)).is_ok(),
            "{topic} {payload}"
        );
    }
    assert_eq!(profiles.retention_days(&t, "pump"), Some(7));
    assert_eq!(profiles.retention_days(&t, "plain"), None);
}

#[tokio::test]
async fn changes_through_profiles_reach_the_guard_at_once() {
    let (_dir, store, t) = setup().await;
    let profiles = Profiles::open(Arc::new(store)).await.unwrap();
    let guard = ProfileGuard::new(profiles.clone());
    let hot = || message(&t, "devices/plain/telemetry", r#"{"temp": 500}"#);
    assert!(guard.accept(&hot()).is_ok());
    // `default` saved with a schema checks every device left in it.
    profiles.replace(&profile(&t, "default")).await.unwrap();
    assert!(guard.accept(&hot()).is_err());
    // Moving the device out of it, or the schema away, lets it through.
    let plain = DeviceId::new("plain").unwrap();
    profiles
        .create(&DeviceProfile {
            telemetry_schema: None,
            ..profile(&t, "loose")
        })
        .await
        .unwrap();
    profiles.device_in(&t, &plain, "loose");
    assert!(guard.accept(&hot()).is_ok());
    profiles.device_in(&t, &plain, "default");
    assert!(guard.accept(&hot()).is_err());
    profiles.delete(&t, "default").await.unwrap();
    assert!(guard.accept(&hot()).is_ok());
}

#[tokio::test]
async fn a_schema_that_does_not_compile_is_not_saved() {
    let (_dir, store, t) = setup().await;
    let profiles = Profiles::open(Arc::new(store.clone())).await.unwrap();
    let bad = DeviceProfile {
        telemetry_schema: Some(json!({"type": 5})),
        ..profile(&t, "bad")
    };
    match profiles.create(&bad).await {
        Err(ProfileError::Invalid { field, why }) => {
            assert_eq!(field, "telemetry_schema");
            assert!(why.contains("/type"), "{why}");
        }
        other => panic!("{:?}", other.map(|p| p.name)),
    }
    assert!(store.get_profile(&t, "bad").await.is_err());
    let huge = DeviceProfile {
        defaults: json!({"x": "y".repeat(MAX_DEFAULTS_BYTES)}),
        ..profile(&t, "huge")
    };
    assert!(matches!(
        profiles.create(&huge).await,
        Err(ProfileError::TooLarge {
            field: "defaults",
            ..
        })
    ));
}

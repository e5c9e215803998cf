//! The identity service over the embedded store: every way a device, user or
//! key proves who it is, and what rotation, revocation and expiry do to it.

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::{DeviceId, PrincipalKind, Role, TenantId};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::{AuthError, DeviceUpdate, Identity, MetaStore, NewDevice};
use jiff::{SignedDuration, Timestamp};

struct Fixture {
    identity: Identity,
    store: Arc<dyn MetaStore>,
    tenant: TenantId,
    device: DeviceId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let identity = Identity::new(store.clone(), Duration::from_secs(3600));
    let generated = identity.bootstrap("admin@localhost", None).await.unwrap();
    assert!(generated.is_some(), "first bootstrap generates a password");
    assert!(
        identity
            .bootstrap("admin@localhost", None)
            .await
            .unwrap()
            .is_none(),
        "only once"
    );
    let tenant = TenantId::new("acme").unwrap();
    store.create_tenant(&tenant, "Acme").await.unwrap();
    let device = DeviceId::new("pump").unwrap();
    let new = NewDevice {
        tenant: tenant.clone(),
        id: device.clone(),
        name: "Pump".into(),
        profile: "default".into(),
        attributes: serde_json::json!({}),
    };
    store.create_device(&new).await.unwrap();
    Fixture {
        identity,
        store,
        tenant,
        device,
        _dir: dir,
    }
}

fn is_device(p: &ferrule_core::Principal, tenant: &str, device: &str) -> bool {
    p.tenant.as_str() == tenant
        && matches!(&p.kind, PrincipalKind::Device { id } if id.as_str() == device)
}

#[tokio::test]
async fn device_tokens_authenticate_until_rotated_or_revoked() {
    let f = fixture().await;
    let (cred, token) = f
        .identity
        .issue_device_token(&f.tenant, &f.device, None)
        .await
        .unwrap();
    let p = f.identity.authenticate_device_token(&token).await.unwrap();
    assert!(is_device(&p, "acme", "pump"));
    assert!(matches!(
        f.identity.authenticate_device_token("fd_nope").await,
        Err(AuthError::Invalid)
    ));
    // A device token is not an API bearer.
    assert!(matches!(
        f.identity.authenticate_bearer(&token).await,
        Err(AuthError::Invalid)
    ));

    let (_, rotated) = f
        .identity
        .rotate_device_token(&f.tenant, &f.device, &cred.id)
        .await
        .unwrap();
    assert!(matches!(
        f.identity.authenticate_device_token(&token).await,
        Err(AuthError::Invalid)
    ));
    assert!(f.identity.authenticate_device_token(&rotated).await.is_ok());

    f.store
        .delete_credential(&f.tenant, &f.device, &cred.id)
        .await
        .unwrap();
    assert!(matches!(
        f.identity.authenticate_device_token(&rotated).await,
        Err(AuthError::Invalid)
    ));
}

#[tokio::test]
async fn disabled_devices_and_expired_credentials_are_refused() {
    let f = fixture().await;
    let soon = Timestamp::now() + SignedDuration::from_millis(300);
    let (_, brief) = f
        .identity
        .issue_device_token(&f.tenant, &f.device, Some(soon))
        .await
        .unwrap();
    let (_, lasting) = f
        .identity
        .issue_device_token(&f.tenant, &f.device, None)
        .await
        .unwrap();
    assert!(f.identity.authenticate_device_token(&brief).await.is_ok());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        f.identity.authenticate_device_token(&brief).await,
        Err(AuthError::Expired)
    ));

    let off = DeviceUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    f.store
        .update_device(&f.tenant, &f.device, &off)
        .await
        .unwrap();
    assert!(matches!(
        f.identity.authenticate_device_token(&lasting).await,
        Err(AuthError::Disabled)
    ));
}

#[tokio::test]
async fn device_passwords_and_fingerprints() {
    let f = fixture().await;
    f.identity
        .add_device_password(&f.tenant, &f.device, "first-password", None)
        .await
        .unwrap();
    let p = f
        .identity
        .authenticate_device_password("acme", "pump", "first-password")
        .await
        .unwrap();
    assert!(is_device(&p, "acme", "pump"));
    for (t, d, pw) in [
        ("acme", "pump", "wrong"),
        ("other", "pump", "first-password"),
        ("acme", "nope", "x"),
        ("bad/t", "pump", "x"),
    ] {
        assert!(
            matches!(
                f.identity.authenticate_device_password(t, d, pw).await,
                Err(AuthError::Invalid)
            ),
            "{t} {d}"
        );
    }
    let fp = format!("sha256:{}", "0f".repeat(32));
    f.identity
        .add_device_fingerprint(&f.tenant, &f.device, &fp, None)
        .await
        .unwrap();
    let upper = format!("SHA256:{}", "0F".repeat(32));
    assert!(is_device(
        &f.identity.authenticate_fingerprint(&upper).await.unwrap(),
        "acme",
        "pump"
    ));
    assert!(
        f.identity
            .authenticate_fingerprint("sha256:00")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn users_sessions_and_api_keys() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(&f.tenant, "ann@acme.example", "ann-password", Role::Editor)
        .await
        .unwrap();
    let session = f
        .identity
        .login("ann@acme.example", "ann-password")
        .await
        .unwrap();
    assert!(session.expires_at > Timestamp::now());
    let p = f
        .identity
        .authenticate_bearer(&session.token)
        .await
        .unwrap();
    assert_eq!(p.tenant, f.tenant);
    assert_eq!(p.role(), Some(Role::Editor));
    assert!(matches!(
        f.identity.login("ann@acme.example", "nope").await,
        Err(AuthError::Invalid)
    ));
    let mqtt = f
        .identity
        .authenticate_user("ann@acme.example", "ann-password")
        .await
        .unwrap();
    assert!(matches!(mqtt.kind, PrincipalKind::User { ref id, .. } if *id == user.id));

    // A password change ends existing sessions.
    f.identity
        .update_user(&f.tenant, &user.id, None, Some("new-password"))
        .await
        .unwrap();
    assert!(
        f.identity
            .authenticate_bearer(&session.token)
            .await
            .is_err()
    );
    f.identity.logout("fs_unknown").await.unwrap();

    let (key, secret) = f
        .identity
        .create_api_key(&f.tenant, "ci", Role::Viewer, None)
        .await
        .unwrap();
    assert_eq!(
        f.identity
            .authenticate_bearer(&secret)
            .await
            .unwrap()
            .role(),
        Some(Role::Viewer)
    );
    assert!(
        f.identity
            .authenticate_api_key(&key.id, &secret)
            .await
            .is_ok()
    );
    assert!(
        f.identity
            .authenticate_api_key("k_other", &secret)
            .await
            .is_err()
    );
    f.store
        .revoke_api_key(&f.tenant, &key.id, Timestamp::now())
        .await
        .unwrap();
    assert!(matches!(
        f.identity.authenticate_bearer(&secret).await,
        Err(AuthError::Revoked)
    ));
}

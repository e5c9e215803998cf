//! The identity service over the embedded store: every way a device, user or
//! key proves who it is, and what rotation, revocation and expiry do to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrule_core::{DeviceId, PrincipalKind, Role, TenantId};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::{
    ApiKey, AuthError, Bootstrap, CertificateLogin, Clock, Credential, DeviceUpdate, Identity,
    IssuedSession, MetaStore, NewDevice, User, UserChange,
};
use jiff::{SignedDuration, Timestamp};

struct Fixture {
    identity: Identity,
    store: Arc<dyn MetaStore>,
    tenant: TenantId,
    device: DeviceId,
    /// The identity service's clock, which the test moves.
    clock: TestClock,
    _dir: tempfile::TempDir,
}

/// A clock that stands still until the test moves it.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Timestamp>>);

impl TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }

    fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let clock = TestClock(Arc::new(Mutex::new(Timestamp::now())));
    let identity = Identity::new(store.clone(), Duration::from_secs(3600)).with_clock({
        let clock = clock.clone();
        Clock::new(move || clock.now())
    });
    let first = identity.bootstrap("admin@localhost", None).await.unwrap();
    assert!(
        matches!(
            first,
            Bootstrap::Created {
                generated_password: Some(_)
            }
        ),
        "first bootstrap generates a password"
    );
    assert_eq!(
        identity
            .bootstrap("admin@localhost", Some("configured"))
            .await
            .unwrap(),
        Bootstrap::Existing,
        "only once"
    );
    let tenant = TenantId::new("acme").unwrap();
    store.create_tenant(&tenant, "Acme").await.unwrap();
    let device = DeviceId::new("pump").unwrap();
    store
        .create_device(&new_device(&tenant, &device, "Pump"))
        .await
        .unwrap();
    Fixture {
        identity,
        store,
        tenant,
        device,
        clock,
        _dir: dir,
    }
}

/// Device `device` of `tenant`, named `name`, in the default profile.
fn new_device(tenant: &TenantId, device: &DeviceId, name: &str) -> NewDevice {
    NewDevice {
        tenant: tenant.clone(),
        id: device.clone(),
        name: name.into(),
        profile: "default".into(),
        attributes: serde_json::json!({}),
    }
}

impl Fixture {
    /// Issues a token for device `pump`, valid until `expires_at` (or for
    /// good); returns its credential and the token.
    async fn pump_token(&self, expires_at: Option<Timestamp>) -> (Credential, String) {
        self.identity
            .issue_device_token(&self.tenant, &self.device, expires_at)
            .await
            .unwrap()
    }

    async fn disable_pump(&self) {
        let off = DeviceUpdate {
            enabled: Some(false),
            ..Default::default()
        };
        self.store
            .update_device(&self.tenant, &self.device, &off)
            .await
            .unwrap();
    }

    /// Creates a user of tenant `acme` and logs them in.
    async fn user_with_session(
        &self,
        email: &str,
        password: &str,
        role: Role,
    ) -> (User, IssuedSession) {
        let user = self
            .identity
            .create_user(&self.tenant, email, password, role)
            .await
            .unwrap();
        let session = self.identity.login(email, password, None).await.unwrap();
        (user, session)
    }

    /// Creates an API key of tenant `acme` on behalf of `created_by`;
    /// returns it with its secret.
    async fn api_key(
        &self,
        name: &str,
        role: Role,
        expires_at: Option<Timestamp>,
        created_by: &str,
    ) -> (ApiKey, String) {
        self.identity
            .create_api_key(&self.tenant, name, role, expires_at, created_by)
            .await
            .unwrap()
    }
}

fn is_device(p: &ferrule_core::Principal, tenant: &str, device: &str) -> bool {
    p.tenant.as_str() == tenant
        && matches!(&p.kind, PrincipalKind::Device { id } if id.as_str() == device)
}

#[tokio::test]
async fn device_tokens_authenticate_until_rotated_or_revoked() {
    let f = fixture().await;
    let (cred, token) = f.pump_token(None).await;
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
    let soon = f.clock.now() + SignedDuration::from_secs(300);
    let (_, brief) = f.pump_token(Some(soon)).await;
    let (_, lasting) = f.pump_token(None).await;
    assert!(f.identity.authenticate_device_token(&brief).await.is_ok());
    f.clock.advance(SignedDuration::from_secs(299));
    assert!(f.identity.authenticate_device_token(&brief).await.is_ok());
    f.clock.advance(SignedDuration::from_secs(1));
    assert!(matches!(
        f.identity.authenticate_device_token(&brief).await,
        Err(AuthError::Expired)
    ));

    f.disable_pump().await;
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
        .authenticate_device_password("acme", "pump", "first-password", None)
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
                f.identity
                    .authenticate_device_password(t, d, pw, None)
                    .await,
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
        &f.identity
            .authenticate_certificate(cert(&upper, None, None, None))
            .await
            .unwrap(),
        "acme",
        "pump"
    ));
    assert!(
        f.identity
            .authenticate_certificate(cert("sha256:00", None, None, None))
            .await
            .is_err()
    );
}

fn cert<'a>(
    fingerprint: &'a str,
    tenant: Option<&'a str>,
    device: Option<&'a str>,
    server_name: Option<&'a str>,
) -> CertificateLogin<'a> {
    CertificateLogin {
        fingerprint,
        tenant,
        device,
        server_name,
    }
}

#[tokio::test]
async fn a_certificate_in_several_tenants_resolves_only_by_naming_or_claim() {
    let f = fixture().await;
    let other = TenantId::new("other").unwrap();
    f.store.create_tenant(&other, "Other").await.unwrap();
    f.store
        .create_device(&new_device(&other, &f.device, "Decoy"))
        .await
        .unwrap();
    let fp = format!("sha256:{}", "ab".repeat(32));
    for t in [&f.tenant, &other] {
        f.identity
            .add_device_fingerprint(t, &f.device, &fp, None)
            .await
            .unwrap();
    }
    let unnamed = cert(&fp, None, None, None);
    assert!(matches!(
        f.identity.authenticate_certificate(unnamed).await,
        Err(AuthError::AmbiguousCertificate)
    ));
    // A server name whose first label is no tenant names nothing.
    assert!(matches!(
        f.identity
            .authenticate_certificate(cert(&fp, None, None, Some("mqtt.example.com")))
            .await,
        Err(AuthError::AmbiguousCertificate)
    ));
    // Naming the wrong device of the tenant fails and claims nothing.
    assert!(matches!(
        f.identity
            .authenticate_certificate(cert(&fp, Some("acme"), Some("valve"), None))
            .await,
        Err(AuthError::Invalid)
    ));
    let named = f
        .identity
        .authenticate_certificate(cert(&fp, None, None, Some("acme.mqtt.example.com")))
        .await
        .unwrap();
    assert!(is_device(&named, "acme", "pump"));
    // Claimed by acme's device: the unnamed login resolves to acme.
    assert!(is_device(
        &f.identity.authenticate_certificate(unnamed).await.unwrap(),
        "acme",
        "pump"
    ));
    // A disabled device keeps its claim; its certificate is refused, never
    // handed to the other tenant.
    f.disable_pump().await;
    assert!(matches!(
        f.identity.authenticate_certificate(unnamed).await,
        Err(AuthError::Disabled)
    ));
}

#[tokio::test]
async fn users_sessions_and_api_keys() {
    let f = fixture().await;
    let (user, session) = f
        .user_with_session("ann@acme.example", "ann-password", Role::Editor)
        .await;
    assert!(session.expires_at > Timestamp::now());
    let p = f
        .identity
        .authenticate_bearer(&session.token)
        .await
        .unwrap();
    assert_eq!(p.tenant, f.tenant);
    assert_eq!(p.role(), Some(Role::Editor));
    assert!(matches!(
        f.identity.login("ann@acme.example", "nope", None).await,
        Err(AuthError::Invalid)
    ));
    let mqtt = f
        .identity
        .authenticate_user("ann@acme.example", "ann-password", None)
        .await
        .unwrap();
    assert!(matches!(mqtt.kind, PrincipalKind::User { ref id, .. } if *id == user.id));

    // A password change ends existing sessions.
    let change = UserChange {
        password: Some("new-password"),
        ..UserChange::default()
    };
    f.identity
        .update_user(&f.tenant, &user.id, change)
        .await
        .unwrap();
    assert!(
        f.identity
            .authenticate_bearer(&session.token)
            .await
            .is_err()
    );
    f.identity.logout("fs_unknown").await.unwrap();

    let (key, secret) = f.api_key("ci", Role::Viewer, None, &user.id).await;
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

#[tokio::test]
async fn a_key_never_exceeds_its_creators_current_role() {
    let f = fixture().await;
    let owner = f
        .identity
        .create_user(&f.tenant, "o@acme.example", "owner-password", Role::Owner)
        .await
        .unwrap();
    f.identity
        .create_user(&f.tenant, "o2@acme.example", "owner-password", Role::Owner)
        .await
        .unwrap();
    let (k1, s1) = f.api_key("k1", Role::Owner, None, &owner.id).await;
    let (_, s2) = f.api_key("k2", Role::Editor, None, &k1.id).await;
    let role = |secret: String| {
        let identity = f.identity.clone();
        async move {
            identity
                .authenticate_bearer(&secret)
                .await
                .map(|p| p.role())
        }
    };
    assert_eq!(role(s1.clone()).await.unwrap(), Some(Role::Owner));
    assert_eq!(role(s2.clone()).await.unwrap(), Some(Role::Editor));
    let demote = UserChange {
        role: Some(Role::Viewer),
        ..UserChange::default()
    };
    f.identity
        .update_user(&f.tenant, &owner.id, demote)
        .await
        .unwrap();
    assert_eq!(role(s1.clone()).await.unwrap(), Some(Role::Viewer));
    assert_eq!(role(s2.clone()).await.unwrap(), Some(Role::Viewer));
    // A chain may not grow without bound.
    let mut creator = k1.id.clone();
    let mut made = 1;
    loop {
        match f
            .identity
            .create_api_key(&f.tenant, "deep", Role::Viewer, None, &creator)
            .await
        {
            Ok((k, _)) => {
                creator = k.id;
                made += 1;
            }
            Err(ferrule_store::StoreError::Refused(why)) => {
                assert!(why.contains("deep"), "{why}");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(made, ferrule_store::MAX_KEY_CHAIN);
    // Deleting the creator revokes its keys.
    f.store
        .delete_user(&f.tenant, &owner.id, None)
        .await
        .unwrap();
    assert!(matches!(role(s1).await, Err(AuthError::Revoked)));
    assert!(matches!(role(s2).await, Err(AuthError::Revoked)));
}

#[tokio::test]
async fn a_key_without_a_recorded_creator_keeps_its_role() {
    // Keys from before creators were recorded (schema 4 and older).
    let f = fixture().await;
    let key = ferrule_store::ApiKey {
        id: "k_legacy".into(),
        tenant: f.tenant.clone(),
        name: "legacy".into(),
        role: Role::Owner,
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
        created_by: None,
    };
    let secret = "fk_legacy-secret";
    f.store
        .create_api_key(&key, &ferrule_core::secret::hash_token(secret))
        .await
        .unwrap();
    let p = f.identity.authenticate_bearer(secret).await.unwrap();
    assert_eq!(p.role(), Some(Role::Owner));
}

#[tokio::test]
async fn sessions_and_api_keys_expire_by_the_identity_clock() {
    let f = fixture().await;
    let (user, session) = f
        .user_with_session("bo@acme.example", "bo-password", Role::Editor)
        .await;
    // The session lives the configured hour from the clock's now.
    assert_eq!(
        session.expires_at,
        f.clock.now() + SignedDuration::from_secs(3600)
    );
    let expiring = f.clock.now() + SignedDuration::from_secs(600);
    let (_, key) = f
        .api_key("ci", Role::Viewer, Some(expiring), &user.id)
        .await;
    let (_, lasting_key) = f.api_key("ops", Role::Viewer, None, &user.id).await;

    f.clock.advance(SignedDuration::from_secs(599));
    assert!(f.identity.authenticate_bearer(&key).await.is_ok());
    f.clock.advance(SignedDuration::from_secs(1));
    assert!(matches!(
        f.identity.authenticate_bearer(&key).await,
        Err(AuthError::Expired)
    ));
    assert!(f.identity.authenticate_bearer(&session.token).await.is_ok());

    f.clock.advance(SignedDuration::from_secs(3000));
    assert!(matches!(
        f.identity.authenticate_bearer(&session.token).await,
        Err(AuthError::Expired)
    ));
    assert!(f.identity.authenticate_bearer(&lasting_key).await.is_ok());
}

//! The conformance suite every [`MetaStore`] backend must pass.
//!
//! Instantiate it in a backend's tests with
//! `ferrule_store::meta_store_conformance!(|| async { (store, guard) })`,
//! where `guard` is anything that must outlive the store (a temp dir, a
//! dropped-at-end database). Each case gets a fresh store.

use ferrule_core::acl::{AclAction, AclRule, AclSubject, Effect};
use ferrule_core::{DeviceId, Role, TenantId};
use jiff::{SignedDuration, Timestamp};

use crate::model::*;
use crate::{MetaStore, StoreError};

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! meta_store_conformance {
    ($factory:expr) => {
        $crate::meta_store_conformance!(@cases $factory;
            tenants_crud_and_paging,
            users_are_unique_by_email_and_scoped_by_tenant,
            sessions_find_and_end,
            api_keys_are_found_by_hash_and_revoked,
            devices_are_scoped_by_tenant,
            credentials_find_rotate_and_delete,
            deleting_a_tenant_removes_everything_it_owns,
            deleting_a_device_removes_everything_it_owns,
            a_deleted_id_is_taken_again_only_once_its_deletion_is_finished,
            the_default_tenant_cannot_be_deleted,
            acl_rules_crud_and_scoped_by_tenant,
            deleting_a_tenant_removes_its_acl_rules,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = ($factory)().await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn device(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn page(limit: u32, after: Option<String>) -> PageRequest {
    PageRequest { limit, after }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::NotFound { .. })),
        "expected NotFound, got {r:?}"
    );
}

async fn with_tenants(s: &dyn MetaStore) -> (TenantId, TenantId) {
    let (a, b) = (tenant("alpha"), tenant("beta"));
    s.create_tenant(&a, "Alpha").await.unwrap();
    s.create_tenant(&b, "Beta").await.unwrap();
    (a, b)
}

fn new_user(id: &str, t: &TenantId, email: &str) -> NewUser {
    NewUser {
        id: id.into(),
        tenant: t.clone(),
        email: email.into(),
        role: Role::Editor,
        password_hash: "hash".into(),
    }
}

fn new_device(t: &TenantId, id: &str) -> NewDevice {
    NewDevice {
        tenant: t.clone(),
        id: device(id),
        name: id.into(),
        profile: "default".into(),
        attributes: serde_json::json!({"floor": 2}),
    }
}

pub async fn tenants_crud_and_paging(s: &dyn MetaStore) {
    for i in 0..5 {
        s.create_tenant(&tenant(&format!("t{i}")), &format!("T{i}"))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.create_tenant(&tenant("t0"), "again").await,
        Err(StoreError::Conflict { .. })
    ));
    let first = s.list_tenants(&page(2, None)).await.unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["t0", "t1"]
    );
    let second = s.list_tenants(&page(2, first.next)).await.unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["t2", "t3"]
    );
    let last = s.list_tenants(&page(2, second.next)).await.unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(last.next.is_none());
    assert_eq!(
        s.rename_tenant(&tenant("t1"), "New").await.unwrap().name,
        "New"
    );
    s.delete_tenant(&tenant("t1")).await.unwrap();
    not_found(s.get_tenant(&tenant("t1")).await);
    not_found(s.delete_tenant(&tenant("t1")).await);
}

pub async fn users_are_unique_by_email_and_scoped_by_tenant(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    let u = s
        .create_user(&new_user("u1", &a, "ann@example.com"))
        .await
        .unwrap();
    assert_eq!(u.role, Role::Editor);
    // Emails are unique across tenants and case-insensitively.
    assert!(matches!(
        s.create_user(&new_user("u2", &b, "ANN@example.com")).await,
        Err(StoreError::Conflict { .. })
    ));
    let rec = s
        .find_user_by_email("Ann@Example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rec.user.id.as_str(), rec.password_hash.as_str()),
        ("u1", "hash")
    );
    not_found(s.get_user(&b, "u1").await);
    not_found(
        s.update_user(
            &b,
            "u1",
            &UserUpdate {
                role: Some(Role::Owner),
                ..Default::default()
            },
        )
        .await,
    );
    not_found(s.delete_user(&b, "u1").await);
    assert!(
        s.list_users(&b, &page(10, None))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let up = UserUpdate {
        role: Some(Role::Viewer),
        password_hash: Some("h2".into()),
    };
    assert_eq!(
        s.update_user(&a, "u1", &up).await.unwrap().role,
        Role::Viewer
    );
    assert_eq!(
        s.find_user_by_email("ann@example.com")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "h2"
    );
    assert_eq!(s.count_users().await.unwrap(), 1);
    s.delete_user(&a, "u1").await.unwrap();
    assert!(
        s.find_user_by_email("ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn sessions_find_and_end(s: &dyn MetaStore) {
    let (a, _) = with_tenants(s).await;
    s.create_user(&new_user("u1", &a, "ann@example.com"))
        .await
        .unwrap();
    let now = Timestamp::now();
    for (hash, offset) in [("live", 3600), ("old", -3600), ("other", 60)] {
        let session = Session {
            token_hash: hash.into(),
            user_id: "u1".into(),
            expires_at: now + SignedDuration::from_secs(offset),
        };
        s.create_session(&session).await.unwrap();
    }
    let (found, user) = s.find_session("live").await.unwrap().unwrap();
    assert_eq!(
        (found.user_id.as_str(), user.email.as_str()),
        ("u1", "ann@example.com")
    );
    assert_eq!(s.purge_expired_sessions(now).await.unwrap(), 1);
    assert!(s.find_session("old").await.unwrap().is_none());
    s.delete_session("live").await.unwrap();
    assert!(s.find_session("live").await.unwrap().is_none());
    s.delete_user_sessions("u1").await.unwrap();
    assert!(s.find_session("other").await.unwrap().is_none());
}

pub async fn api_keys_are_found_by_hash_and_revoked(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    let key = ApiKey {
        id: "k1".into(),
        tenant: a.clone(),
        name: "ci".into(),
        role: Role::Viewer,
        created_at: Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
        expires_at: None,
        revoked_at: None,
    };
    s.create_api_key(&key, "secret-hash").await.unwrap();
    assert_eq!(s.find_api_key("secret-hash").await.unwrap().unwrap(), key);
    assert!(s.find_api_key("other").await.unwrap().is_none());
    not_found(s.get_api_key(&b, "k1").await);
    not_found(s.revoke_api_key(&b, "k1", Timestamp::now()).await);
    let revoked = s.revoke_api_key(&a, "k1", Timestamp::now()).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(!revoked.is_active(Timestamp::now()));
    // Revoked keys stay listed for audit.
    assert_eq!(
        s.list_api_keys(&a, &page(10, None))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

pub async fn devices_are_scoped_by_tenant(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_device(&new_device(&a, "pump")).await.unwrap();
    // The same id in another tenant is a different device.
    s.create_device(&new_device(&b, "pump")).await.unwrap();
    assert!(matches!(
        s.create_device(&new_device(&a, "pump")).await,
        Err(StoreError::Conflict { .. })
    ));
    let up = DeviceUpdate {
        name: Some("Pump A".into()),
        enabled: Some(false),
        ..Default::default()
    };
    let d = s.update_device(&a, &device("pump"), &up).await.unwrap();
    assert_eq!((d.name.as_str(), d.enabled), ("Pump A", false));
    assert_eq!(d.attributes, serde_json::json!({"floor": 2}));
    assert_eq!(
        s.get_device(&b, &device("pump")).await.unwrap().name,
        "pump"
    );
    not_found(s.get_device(&a, &device("nope")).await);
    for i in 0..3 {
        s.create_device(&new_device(&a, &format!("d{i}")))
            .await
            .unwrap();
    }
    let p1 = s.list_devices(&a, &page(3, None)).await.unwrap();
    let p2 = s.list_devices(&a, &page(3, p1.next.clone())).await.unwrap();
    let ids: Vec<_> = p1
        .items
        .iter()
        .chain(&p2.items)
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["d0", "d1", "d2", "pump"]);
    assert!(p2.next.is_none());
    s.delete_device(&a, &device("pump")).await.unwrap();
    not_found(s.get_device(&a, &device("pump")).await);
    assert!(s.get_device(&b, &device("pump")).await.is_ok());
}

pub async fn credentials_find_rotate_and_delete(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_device(&new_device(&a, "pump")).await.unwrap();
    let token = NewCredential {
        id: "c1".into(),
        kind: CredentialKind::Token,
        secret_hash: Some("tok-hash".into()),
        fingerprint: None,
        expires_at: None,
    };
    let pw = NewCredential {
        id: "c2".into(),
        kind: CredentialKind::Password,
        secret_hash: Some("pw-hash".into()),
        fingerprint: None,
        expires_at: None,
    };
    let x509 = NewCredential {
        id: "c3".into(),
        kind: CredentialKind::X509,
        secret_hash: None,
        fingerprint: Some("sha256:00".into()),
        expires_at: None,
    };
    for c in [&token, &pw, &x509] {
        s.add_credential(&a, &device("pump"), c).await.unwrap();
    }
    not_found(s.add_credential(&b, &device("pump"), &token).await);
    let login = s.find_device_by_token("tok-hash").await.unwrap().unwrap();
    assert_eq!(
        (login.tenant.as_str(), login.device.as_str()),
        ("alpha", "pump")
    );
    assert!(
        s.find_device_by_token("pw-hash").await.unwrap().is_none(),
        "a password is not a token"
    );
    assert!(
        s.find_device_by_fingerprint("sha256:00")
            .await
            .unwrap()
            .is_some()
    );
    let pws = s.device_passwords(&a, &device("pump")).await.unwrap();
    assert_eq!(
        pws.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(),
        ["pw-hash"]
    );
    assert!(
        s.device_passwords(&b, &device("pump"))
            .await
            .unwrap()
            .is_empty()
    );
    let listed = s.list_credentials(&a, &device("pump")).await.unwrap();
    assert_eq!(listed.len(), 3);
    not_found(s.list_credentials(&b, &device("pump")).await);

    s.rotate_credential(&a, &device("pump"), "c1", "new-hash")
        .await
        .unwrap();
    assert!(s.find_device_by_token("tok-hash").await.unwrap().is_none());
    assert!(s.find_device_by_token("new-hash").await.unwrap().is_some());
    assert!(matches!(
        s.rotate_credential(&a, &device("pump"), "c3", "x").await,
        Err(StoreError::Refused(_))
    ));
    not_found(s.rotate_credential(&b, &device("pump"), "c1", "x").await);
    not_found(s.delete_credential(&b, &device("pump"), "c1").await);
    s.delete_credential(&a, &device("pump"), "c1")
        .await
        .unwrap();
    assert!(s.find_device_by_token("new-hash").await.unwrap().is_none());
    // Deleting the device deletes its remaining credentials.
    s.delete_device(&a, &device("pump")).await.unwrap();
    assert!(
        s.find_device_by_fingerprint("sha256:00")
            .await
            .unwrap()
            .is_none()
    );
}

fn credential(id: &str, kind: CredentialKind, secret: &str) -> NewCredential {
    let x509 = kind == CredentialKind::X509;
    NewCredential {
        id: id.into(),
        kind,
        secret_hash: (!x509).then(|| secret.into()),
        fingerprint: x509.then(|| secret.into()),
        expires_at: None,
    }
}

/// A device with a token, a password and a certificate.
async fn device_with_credentials(s: &dyn MetaStore, t: &TenantId, id: &str) {
    s.create_device(&new_device(t, id)).await.unwrap();
    for c in [
        credential(
            &format!("{id}-c1"),
            CredentialKind::Token,
            &format!("{id}-tok"),
        ),
        credential(
            &format!("{id}-c2"),
            CredentialKind::Password,
            &format!("{id}-pw"),
        ),
        credential(
            &format!("{id}-c3"),
            CredentialKind::X509,
            &format!("sha256:{id}"),
        ),
    ] {
        s.add_credential(t, &device(id), &c).await.unwrap();
    }
}

async fn assert_device_gone(s: &dyn MetaStore, t: &TenantId, id: &str) {
    not_found(s.get_device(t, &device(id)).await);
    not_found(s.list_credentials(t, &device(id)).await);
    assert!(
        s.find_device_by_token(&format!("{id}-tok"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_device_by_fingerprint(&format!("sha256:{id}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.device_passwords(t, &device(id)).await.unwrap().is_empty());
}

pub async fn deleting_a_tenant_removes_everything_it_owns(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_user(&new_user("u1", &a, "ann@example.com"))
        .await
        .unwrap();
    let session = Session {
        token_hash: "sess".into(),
        user_id: "u1".into(),
        expires_at: Timestamp::now() + SignedDuration::from_hours(1),
    };
    s.create_session(&session).await.unwrap();
    let key = ApiKey {
        id: "k1".into(),
        tenant: a.clone(),
        name: "ci".into(),
        role: Role::Editor,
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
    };
    s.create_api_key(&key, "key-hash").await.unwrap();
    device_with_credentials(s, &a, "pump").await;
    s.create_acl_rule(&a, &acl_rule("acl_1", "#", 0))
        .await
        .unwrap();
    s.create_device(&new_device(&b, "keep")).await.unwrap();

    s.delete_tenant(&a).await.unwrap();
    not_found(s.get_tenant(&a).await);
    assert!(
        s.find_user_by_email("ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.find_session("sess").await.unwrap().is_none());
    assert!(s.find_api_key("key-hash").await.unwrap().is_none());
    assert_device_gone(s, &a, "pump").await;
    assert!(s.get_device(&b, &device("keep")).await.is_ok());
    assert_eq!(
        s.pending_deletions().await.unwrap(),
        [PendingDeletion {
            tenant: a.clone(),
            device: None
        }]
    );

    // Created again, once the deletion is finished: empty.
    s.finish_deletion(&PendingDeletion {
        tenant: a.clone(),
        device: None,
    })
    .await
    .unwrap();
    s.create_tenant(&a, "Alpha again").await.unwrap();
    assert!(
        s.list_users(&a, &page(10, None))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        s.list_api_keys(&a, &page(10, None))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        s.list_devices(&a, &page(10, None))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(s.list_acl_rules(&a).await.unwrap().is_empty());
    not_found(s.get_user(&a, "u1").await);
    not_found(s.get_api_key(&a, "k1").await);
    // The freed email and fingerprint may be used again.
    s.create_user(&new_user("u2", &a, "ann@example.com"))
        .await
        .unwrap();
    device_with_credentials(s, &a, "pump").await;
}

pub async fn deleting_a_device_removes_everything_it_owns(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    device_with_credentials(s, &a, "pump").await;
    device_with_credentials(s, &a, "valve").await;
    s.create_device(&new_device(&b, "pump")).await.unwrap();

    s.delete_device(&a, &device("pump")).await.unwrap();
    assert_device_gone(s, &a, "pump").await;
    not_found(s.delete_device(&a, &device("pump")).await);
    assert_eq!(
        s.list_credentials(&a, &device("valve"))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(s.get_device(&b, &device("pump")).await.is_ok());
    let pending = PendingDeletion {
        tenant: a.clone(),
        device: Some(device("pump")),
    };
    assert_eq!(
        s.pending_deletions().await.unwrap(),
        std::slice::from_ref(&pending)
    );

    s.finish_deletion(&pending).await.unwrap();
    assert!(s.pending_deletions().await.unwrap().is_empty());
    s.create_device(&new_device(&a, "pump")).await.unwrap();
    assert!(
        s.list_credentials(&a, &device("pump"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_deleted_id_is_taken_again_only_once_its_deletion_is_finished(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_device(&new_device(&a, "pump")).await.unwrap();
    s.delete_device(&a, &device("pump")).await.unwrap();
    assert!(matches!(
        s.create_device(&new_device(&a, "pump")).await,
        Err(StoreError::Refused(_))
    ));
    // Only that id, in that tenant.
    s.create_device(&new_device(&a, "valve")).await.unwrap();
    s.create_device(&new_device(&b, "other")).await.unwrap();

    s.delete_tenant(&b).await.unwrap();
    assert!(matches!(
        s.create_tenant(&b, "again").await,
        Err(StoreError::Refused(_))
    ));
    for d in s.pending_deletions().await.unwrap() {
        s.finish_deletion(&d).await.unwrap();
    }
    s.create_device(&new_device(&a, "pump")).await.unwrap();
    s.create_tenant(&b, "again").await.unwrap();
    // Finishing twice is harmless.
    s.finish_deletion(&PendingDeletion {
        tenant: b,
        device: None,
    })
    .await
    .unwrap();
}

pub async fn the_default_tenant_cannot_be_deleted(s: &dyn MetaStore) {
    let default = TenantId::default_tenant();
    if s.get_tenant(&default).await.is_err() {
        s.create_tenant(&default, "Default").await.unwrap();
    }
    assert!(matches!(
        s.delete_tenant(&default).await,
        Err(StoreError::Refused(_))
    ));
    assert!(s.get_tenant(&default).await.is_ok());
    assert!(s.pending_deletions().await.unwrap().is_empty());
}

fn acl_rule(id: &str, topic: &str, priority: i32) -> AclRule {
    AclRule {
        id: id.into(),
        effect: Effect::Allow,
        action: AclAction::Publish,
        topic: topic.into(),
        subject: AclSubject::Devices,
        priority,
    }
}

pub async fn acl_rules_crud_and_scoped_by_tenant(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    let gateway = acl_rule("acl_2", "devices/+/telemetry", 0);
    assert_eq!(s.create_acl_rule(&a, &gateway).await.unwrap(), gateway);
    let other = AclRule {
        effect: Effect::Deny,
        action: AclAction::All,
        subject: AclSubject::All,
        ..acl_rule("acl_1", "devices/{device_id}/secret/#", -3)
    };
    s.create_acl_rule(&a, &other).await.unwrap();
    assert!(matches!(
        s.create_acl_rule(&a, &gateway).await,
        Err(StoreError::Conflict { .. })
    ));
    // The same id in another tenant is a different rule, and reveals nothing.
    let theirs = acl_rule("acl_2", "#", 9);
    s.create_acl_rule(&b, &theirs).await.unwrap();
    assert_eq!(s.get_acl_rule(&a, "acl_1").await.unwrap(), other);
    assert_eq!(
        s.list_acl_rules(&a).await.unwrap(),
        [other.clone(), gateway.clone()],
        "every field round-trips, by id"
    );
    assert_eq!(
        s.list_acl_rules(&b).await.unwrap(),
        std::slice::from_ref(&theirs)
    );

    let changed = AclRule {
        effect: Effect::Deny,
        action: AclAction::Subscribe,
        topic: "alerts/#".into(),
        subject: AclSubject::Anonymous,
        priority: 7,
        ..gateway.clone()
    };
    assert_eq!(s.update_acl_rule(&a, &changed).await.unwrap(), changed);
    assert_eq!(s.get_acl_rule(&a, "acl_2").await.unwrap(), changed);
    assert_eq!(s.get_acl_rule(&b, "acl_2").await.unwrap(), theirs);
    not_found(s.get_acl_rule(&b, "acl_1").await);
    not_found(s.update_acl_rule(&b, &acl_rule("acl_1", "#", 0)).await);
    not_found(s.delete_acl_rule(&b, "acl_1").await);
    not_found(s.update_acl_rule(&a, &acl_rule("acl_none", "#", 0)).await);
    assert_eq!(s.get_acl_rule(&a, "acl_1").await.unwrap(), other);

    s.delete_acl_rule(&a, "acl_2").await.unwrap();
    not_found(s.get_acl_rule(&a, "acl_2").await);
    not_found(s.delete_acl_rule(&a, "acl_2").await);
    assert_eq!(s.list_acl_rules(&a).await.unwrap(), [other]);
    assert_eq!(s.list_acl_rules(&b).await.unwrap(), [theirs]);
}

pub async fn deleting_a_tenant_removes_its_acl_rules(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_acl_rule(&a, &acl_rule("acl_1", "#", 0))
        .await
        .unwrap();
    s.create_acl_rule(&b, &acl_rule("acl_1", "#", 0))
        .await
        .unwrap();
    s.delete_tenant(&a).await.unwrap();
    // A tenant created again under the same id starts without rules.
    for d in s.pending_deletions().await.unwrap() {
        s.finish_deletion(&d).await.unwrap();
    }
    s.create_tenant(&a, "Alpha again").await.unwrap();
    assert!(s.list_acl_rules(&a).await.unwrap().is_empty());
    assert_eq!(s.list_acl_rules(&b).await.unwrap().len(), 1);
}

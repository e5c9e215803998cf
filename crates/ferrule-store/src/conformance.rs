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
            user_changes_need_a_role_at_least_the_users,
            user_updates_change_email_and_end_sessions,
            the_last_admin_and_the_last_owner_stay,
            concurrent_demotions_keep_an_owner,
            api_keys_record_their_creators_and_revoke_with_them,
            fingerprints_are_unique_per_tenant_and_claimed,
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
    not_found(s.delete_user(&b, "u1", None).await);
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
        ..Default::default()
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
    s.delete_user(&a, "u1", None).await.unwrap();
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
    let end = UserUpdate {
        end_sessions: EndSessions::All,
        ..Default::default()
    };
    s.update_user(&a, "u1", &end).await.unwrap();
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
        created_by: None,
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
    assert_eq!(
        s.find_device_by_fingerprint("sha256:00", None)
            .await
            .unwrap()
            .len(),
        1
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
        s.find_device_by_fingerprint("sha256:00", None)
            .await
            .unwrap()
            .is_empty()
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
        s.find_device_by_fingerprint(&format!("sha256:{id}"), None)
            .await
            .unwrap()
            .is_empty()
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
        created_by: Some("u1".into()),
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

fn with_role(id: &str, t: &TenantId, role: Role) -> NewUser {
    NewUser {
        role,
        ..new_user(id, t, &format!("{id}@example.com"))
    }
}

fn set_role(role: Role, by: Option<Role>) -> UserUpdate {
    UserUpdate {
        role: Some(role),
        by,
        ..Default::default()
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, StoreError>, says: &str) {
    match r {
        Err(StoreError::Refused(why)) => assert!(why.contains(says), "{why}"),
        other => panic!("expected Refused({says:?}), got {other:?}"),
    }
}

fn outranked<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::Outranked)),
        "expected Outranked, got {r:?}"
    );
}

pub async fn user_changes_need_a_role_at_least_the_users(s: &dyn MetaStore) {
    let (a, _) = with_tenants(s).await;
    for (id, role) in [
        ("o1", Role::Owner),
        ("o2", Role::Owner),
        ("e1", Role::Editor),
    ] {
        s.create_user(&with_role(id, &a, role)).await.unwrap();
    }
    // Whatever the change, the user's current role decides.
    let password = UserUpdate {
        password_hash: Some("stolen".into()),
        by: Some(Role::Editor),
        ..Default::default()
    };
    outranked(s.update_user(&a, "o1", &password).await);
    outranked(
        s.update_user(&a, "o1", &set_role(Role::Viewer, Some(Role::Editor)))
            .await,
    );
    outranked(s.delete_user(&a, "o1", Some(Role::Editor)).await);
    assert_eq!(s.get_user(&a, "o1").await.unwrap().role, Role::Owner);
    assert_eq!(
        s.find_user_by_email("o1@example.com")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "hash"
    );
    // Equal or higher may.
    let by_owner = UserUpdate {
        by: Some(Role::Owner),
        ..password
    };
    s.update_user(&a, "o1", &by_owner).await.unwrap();
    s.update_user(&a, "e1", &set_role(Role::Viewer, Some(Role::Editor)))
        .await
        .unwrap();
    s.delete_user(&a, "o2", Some(Role::Owner)).await.unwrap();
}

pub async fn user_updates_change_email_and_end_sessions(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    s.create_user(&with_role("u1", &a, Role::Editor))
        .await
        .unwrap();
    s.create_user(&with_role("u2", &b, Role::Editor))
        .await
        .unwrap();
    let email = |e: &str| UserUpdate {
        email: Some(e.into()),
        ..Default::default()
    };
    // Unique across the instance, case-insensitively, like at creation.
    assert!(matches!(
        s.update_user(&a, "u1", &email("U2@example.com")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.update_user(&a, "u1", &email("ann@example.com"))
            .await
            .unwrap()
            .email,
        "ann@example.com"
    );
    assert!(
        s.find_user_by_email("ann@example.com")
            .await
            .unwrap()
            .is_some()
    );
    let expires_at = Timestamp::now() + SignedDuration::from_secs(3600);
    for hash in ["this", "other", "third"] {
        let session = Session {
            token_hash: hash.into(),
            user_id: "u1".into(),
            expires_at,
        };
        s.create_session(&session).await.unwrap();
    }
    // An email alone ends nothing; a password ends all but the caller's.
    s.update_user(&a, "u1", &email("ann2@example.com"))
        .await
        .unwrap();
    assert!(s.find_session("other").await.unwrap().is_some());
    let own = UserUpdate {
        password_hash: Some("h2".into()),
        end_sessions: EndSessions::AllBut("this".into()),
        ..Default::default()
    };
    s.update_user(&a, "u1", &own).await.unwrap();
    assert!(s.find_session("this").await.unwrap().is_some());
    assert!(s.find_session("other").await.unwrap().is_none());
    assert!(s.find_session("third").await.unwrap().is_none());
    // A refused change changes nothing, sessions included.
    let refused_change = UserUpdate {
        email: Some("u2@example.com".into()),
        end_sessions: EndSessions::All,
        ..Default::default()
    };
    assert!(s.update_user(&a, "u1", &refused_change).await.is_err());
    assert!(s.find_session("this").await.unwrap().is_some());
}

pub async fn the_last_admin_and_the_last_owner_stay(s: &dyn MetaStore) {
    let default = TenantId::default_tenant();
    s.create_tenant(&default, "Default").await.unwrap();
    let (a, _) = with_tenants(s).await;
    s.create_user(&with_role("admin1", &default, Role::Admin))
        .await
        .unwrap();
    refused(
        s.update_user(&default, "admin1", &set_role(Role::Owner, None))
            .await,
        "no admin",
    );
    refused(s.delete_user(&default, "admin1", None).await, "no admin");
    // Admins count as owners of `default`: its owners may all go.
    s.create_user(&with_role("od", &default, Role::Owner))
        .await
        .unwrap();
    s.update_user(&default, "od", &set_role(Role::Editor, None))
        .await
        .unwrap();
    s.create_user(&with_role("admin2", &default, Role::Admin))
        .await
        .unwrap();
    s.update_user(&default, "admin1", &set_role(Role::Owner, None))
        .await
        .unwrap();
    refused(s.delete_user(&default, "admin2", None).await, "no admin");

    // A tenant with an owner keeps one.
    s.create_user(&with_role("o1", &a, Role::Owner))
        .await
        .unwrap();
    s.create_user(&with_role("e1", &a, Role::Editor))
        .await
        .unwrap();
    refused(
        s.update_user(&a, "o1", &set_role(Role::Editor, None)).await,
        "tenant alpha would have no owner; promote another user first",
    );
    refused(
        s.delete_user(&a, "o1", None).await,
        "tenant alpha would have no owner",
    );
    assert_eq!(s.get_user(&a, "o1").await.unwrap().role, Role::Owner);
    s.delete_user(&a, "e1", None).await.unwrap();
    s.create_user(&with_role("o2", &a, Role::Owner))
        .await
        .unwrap();
    s.update_user(&a, "o1", &set_role(Role::Editor, None))
        .await
        .unwrap();
    refused(s.delete_user(&a, "o2", None).await, "no owner");
    // A tenant that never had an owner is no concern of this rule.
    let b = tenant("beta");
    s.create_user(&with_role("e2", &b, Role::Editor))
        .await
        .unwrap();
    s.delete_user(&b, "e2", None).await.unwrap();
}

pub async fn concurrent_demotions_keep_an_owner(s: &dyn MetaStore) {
    // Each round: two owners demote each other at the same time. Whatever
    // the interleaving, exactly one demotion may succeed.
    for round in 0..10 {
        let t = tenant(&format!("race{round}"));
        s.create_tenant(&t, "Race").await.unwrap();
        let (x, y) = (format!("x{round}"), format!("y{round}"));
        s.create_user(&with_role(&x, &t, Role::Owner))
            .await
            .unwrap();
        s.create_user(&with_role(&y, &t, Role::Owner))
            .await
            .unwrap();
        let demote = set_role(Role::Editor, Some(Role::Owner));
        let (rx, ry) = futures_join(
            s.update_user(&t, &x, &demote),
            s.update_user(&t, &y, &demote),
        )
        .await;
        assert_eq!(
            usize::from(rx.is_ok()) + usize::from(ry.is_ok()),
            1,
            "round {round}: {rx:?} / {ry:?}"
        );
        let owners = s
            .list_users(&t, &page(10, None))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|u| u.role == Role::Owner)
            .count();
        assert_eq!(owners, 1, "round {round}");
    }
}

/// Polls both futures together, so a backend sees the calls overlap.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

fn api_key(id: &str, t: &TenantId, role: Role, created_by: Option<&str>) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant: t.clone(),
        name: id.into(),
        role,
        created_at: Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
        expires_at: None,
        revoked_at: None,
        created_by: created_by.map(str::to_owned),
    }
}

pub async fn api_keys_record_their_creators_and_revoke_with_them(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    for (id, role) in [
        ("u1", Role::Owner),
        ("u2", Role::Owner),
        ("u3", Role::Editor),
    ] {
        s.create_user(&with_role(id, &a, role)).await.unwrap();
    }
    let keys = [
        api_key("k1", &a, Role::Owner, Some("u1")),
        api_key("k2", &a, Role::Editor, Some("k1")),
        api_key("k3", &a, Role::Viewer, Some("k2")),
        api_key("k4", &b, Role::Viewer, Some("u3")),
        api_key("legacy", &a, Role::Owner, None),
        api_key("orphan", &a, Role::Viewer, Some("u_gone")),
    ];
    for k in &keys {
        s.create_api_key(k, &format!("hash-{}", k.id))
            .await
            .unwrap();
    }
    assert_eq!(
        s.find_api_key("hash-k2")
            .await
            .unwrap()
            .unwrap()
            .created_by
            .as_deref(),
        Some("k1")
    );
    let chain = s.api_key_creators("k3").await.unwrap();
    let user = s.get_user(&a, "u1").await.unwrap();
    assert_eq!(
        chain,
        [
            KeyCreator::Key(keys[1].clone()),
            KeyCreator::Key(keys[0].clone()),
            KeyCreator::User(user),
        ]
    );
    assert!(s.api_key_creators("legacy").await.unwrap().is_empty());
    assert_eq!(
        s.api_key_creators("orphan").await.unwrap(),
        [KeyCreator::Missing("u_gone".into())]
    );
    // A creator's keys are found across tenants (an admin makes keys in any).
    let ids = |v: Vec<ApiKey>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.api_keys_made_by("u1").await.unwrap()),
        ["k1", "k2", "k3"]
    );
    assert_eq!(ids(s.api_keys_made_by("u3").await.unwrap()), ["k4"]);

    // Revoking a key revokes what it made, not what made it.
    s.revoke_api_key(&a, "k2", Timestamp::now()).await.unwrap();
    let revoked = |id: &'static str, t: TenantId| async move {
        s.get_api_key(&t, id).await.unwrap().revoked_at.is_some()
    };
    assert!(revoked("k2", a.clone()).await && revoked("k3", a.clone()).await);
    assert!(!revoked("k1", a.clone()).await);
    // Deleting a user revokes its keys, in any tenant.
    s.delete_user(&a, "u3", None).await.unwrap();
    assert!(revoked("k4", b.clone()).await);
    s.delete_user(&a, "u1", None).await.unwrap();
    assert!(revoked("k1", a.clone()).await);
    assert!(!revoked("legacy", a.clone()).await);
    // A refused deletion revokes nothing.
    s.create_api_key(&api_key("k5", &a, Role::Owner, Some("u2")), "hash-k5")
        .await
        .unwrap();
    assert!(s.delete_user(&a, "u2", None).await.is_err(), "last owner");
    assert!(!revoked("k5", a.clone()).await);
}

fn x509(id: &str, fp: &str) -> NewCredential {
    NewCredential {
        id: id.into(),
        kind: CredentialKind::X509,
        secret_hash: None,
        fingerprint: Some(fp.into()),
        expires_at: None,
    }
}

pub async fn fingerprints_are_unique_per_tenant_and_claimed(s: &dyn MetaStore) {
    let (a, b) = with_tenants(s).await;
    for t in [&a, &b] {
        s.create_device(&new_device(t, "pump")).await.unwrap();
        s.create_device(&new_device(t, "spare")).await.unwrap();
    }
    s.add_credential(&a, &device("pump"), &x509("ca", "sha256:11"))
        .await
        .unwrap();
    // Another tenant registers the same fingerprint: no conflict, no leak.
    s.add_credential(&b, &device("pump"), &x509("cb", "sha256:11"))
        .await
        .unwrap();
    // Within a tenant it is a conflict.
    assert!(matches!(
        s.add_credential(&a, &device("spare"), &x509("ca2", "sha256:11"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let all = s
        .find_device_by_fingerprint("sha256:11", None)
        .await
        .unwrap();
    let found: Vec<_> = all
        .iter()
        .map(|r| (r.login.tenant.as_str(), r.credential_id.as_str(), r.claimed))
        .collect();
    assert_eq!(found, [("alpha", "ca", false), ("beta", "cb", false)]);
    let in_b = s
        .find_device_by_fingerprint("sha256:11", Some(&b))
        .await
        .unwrap();
    assert_eq!(in_b.len(), 1);
    assert_eq!(in_b[0].login.device.as_str(), "pump");

    s.claim_certificate(&b, "cb").await.unwrap();
    s.claim_certificate(&b, "cb").await.unwrap();
    not_found(s.claim_certificate(&a, "cb").await);
    let claimed: Vec<_> = s
        .find_device_by_fingerprint("sha256:11", None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.claimed)
        .collect();
    assert_eq!(claimed, [false, true]);
    // Disabled devices still count: a lapse must not hand the certificate
    // to another tenant.
    let off = DeviceUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    s.update_device(&b, &device("pump"), &off).await.unwrap();
    let all = s
        .find_device_by_fingerprint("sha256:11", None)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(!all[1].login.enabled);
}

//! The ACL cache the broker asks on every publish: served from memory, and
//! never stale after a change made through it.

use std::sync::Arc;

use ferrule_core::acl::{Access, AclAction, AclRule, AclSubject, Effect};
use ferrule_core::{DeviceId, Principal, PrincipalKind, TenantId};
use ferrule_store::embedded::EmbeddedStore;
use ferrule_store::{AclCache, MetaStore, StoreError};

struct Fixture {
    cache: AclCache,
    store: Arc<dyn MetaStore>,
    tenant: TenantId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let tenant = TenantId::new("acme").unwrap();
    store.create_tenant(&tenant, "Acme").await.unwrap();
    Fixture {
        cache: AclCache::new(store.clone()),
        store,
        tenant,
        _dir: dir,
    }
}

/// Lets any device publish any device's telemetry (a gateway's rule).
fn gateway_rule(id: &str) -> AclRule {
    AclRule {
        id: id.into(),
        effect: Effect::Allow,
        action: AclAction::Publish,
        topic: "devices/+/telemetry".into(),
        subject: AclSubject::Devices,
        priority: 0,
    }
}

fn gateway(tenant: &TenantId) -> Principal {
    Principal {
        tenant: tenant.clone(),
        kind: PrincipalKind::Device {
            id: DeviceId::new("gw").unwrap(),
        },
    }
}

const CHILD_TELEMETRY: &str = "devices/child/telemetry";

#[tokio::test]
async fn a_policy_is_loaded_once_then_served_from_memory() {
    let f = fixture().await;
    f.store
        .create_acl_rule(&f.tenant, &gateway_rule("acl_1"))
        .await
        .unwrap();
    let first = f.cache.policy(&f.tenant).await.unwrap();
    assert!(first.allows(&gateway(&f.tenant), Access::Publish, CHILD_TELEMETRY));
    // A change behind the cache's back is not seen: proof it is not re-read.
    f.store.delete_acl_rule(&f.tenant, "acl_1").await.unwrap();
    let second = f.cache.policy(&f.tenant).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    // Until the tenant is invalidated.
    f.cache.invalidate(&f.tenant);
    let third = f.cache.policy(&f.tenant).await.unwrap();
    assert!(!third.allows(&gateway(&f.tenant), Access::Publish, CHILD_TELEMETRY));
}

#[tokio::test]
async fn changes_through_the_cache_are_visible_to_the_next_call() {
    let f = fixture().await;
    let gw = gateway(&f.tenant);
    let before = f.cache.policy(&f.tenant).await.unwrap();
    assert!(!before.allows(&gw, Access::Publish, CHILD_TELEMETRY));

    let rule = f
        .cache
        .create(&f.tenant, &gateway_rule("acl_1"))
        .await
        .unwrap();
    assert!(
        f.cache
            .policy(&f.tenant)
            .await
            .unwrap()
            .allows(&gw, Access::Publish, CHILD_TELEMETRY)
    );
    // A policy already handed out stays as it was: callers re-ask per message.
    assert!(!before.allows(&gw, Access::Publish, CHILD_TELEMETRY));

    let denied = AclRule {
        effect: Effect::Deny,
        ..rule
    };
    f.cache.update(&f.tenant, &denied).await.unwrap();
    let p = f.cache.policy(&f.tenant).await.unwrap();
    assert!(!p.allows(&gw, Access::Publish, CHILD_TELEMETRY));
    assert!(
        !p.allows(&gw, Access::Publish, "devices/gw/telemetry"),
        "the deny now applies to its own telemetry too"
    );

    f.cache.delete(&f.tenant, "acl_1").await.unwrap();
    let p = f.cache.policy(&f.tenant).await.unwrap();
    assert_eq!(p.rules().len(), 0);
    assert!(p.allows(&gw, Access::Publish, "devices/gw/telemetry"));
}

#[tokio::test]
async fn store_errors_pass_through_and_tenants_stay_apart() {
    let f = fixture().await;
    let other = TenantId::new("other").unwrap();
    f.store.create_tenant(&other, "Other").await.unwrap();
    f.cache
        .create(&other, &gateway_rule("acl_1"))
        .await
        .unwrap();
    let others = f.cache.policy(&other).await.unwrap();

    f.cache
        .create(&f.tenant, &gateway_rule("acl_1"))
        .await
        .unwrap();
    assert!(matches!(
        f.cache.create(&f.tenant, &gateway_rule("acl_1")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        f.cache.delete(&f.tenant, "acl_missing").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(f.cache.policy(&f.tenant).await.unwrap().rules().len(), 1);
    // A change in one tenant leaves another's policy cached.
    assert!(Arc::ptr_eq(&others, &f.cache.policy(&other).await.unwrap()));
    assert!(matches!(
        f.cache.delete(&other, "acl_missing").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(f.cache.policy(&other).await.unwrap().rules().len(), 1);
}

/// A load racing a change must not cache the rules from before the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_a_change_never_leaves_a_stale_policy() {
    let f = fixture().await;
    for i in 0..100 {
        f.cache.invalidate(&f.tenant);
        let (cache, tenant) = (f.cache.clone(), f.tenant.clone());
        let reader = tokio::spawn(async move { cache.policy(&tenant).await });
        f.cache
            .create(&f.tenant, &gateway_rule(&format!("acl_{i:02}")))
            .await
            .unwrap();
        reader.await.unwrap().unwrap();
        let p = f.cache.policy(&f.tenant).await.unwrap();
        assert_eq!(p.rules().len(), i + 1, "round {i}");
    }
}

#[tokio::test]
async fn the_policy_version_moves_after_the_new_rules_are_in_place() {
    // The broker caches decisions under the version: it must move on every
    // change, and not before `current` answers with the new rules.
    let f = fixture().await;
    let gw = gateway(&f.tenant);
    let version = f.cache.version(&f.tenant);
    f.cache.policy(&f.tenant).await.unwrap();
    let before = version.load(std::sync::atomic::Ordering::Acquire);
    f.cache
        .create(&f.tenant, &gateway_rule("acl_1"))
        .await
        .unwrap();
    let after_create = version.load(std::sync::atomic::Ordering::Acquire);
    assert!(after_create > before);
    assert!(
        f.cache
            .current(&f.tenant)
            .allows(&gw, Access::Publish, CHILD_TELEMETRY)
    );
    f.cache.delete(&f.tenant, "acl_1").await.unwrap();
    let after_delete = version.load(std::sync::atomic::Ordering::Acquire);
    assert!(after_delete > after_create);
    f.cache.touch(&f.tenant);
    assert!(version.load(std::sync::atomic::Ordering::Acquire) > after_delete);
    // Another tenant's changes leave it alone.
    let other = TenantId::new("other").unwrap();
    let unchanged = version.load(std::sync::atomic::Ordering::Acquire);
    f.cache.touch(&other);
    f.cache.invalidate(&other);
    assert_eq!(
        version.load(std::sync::atomic::Ordering::Acquire),
        unchanged
    );
}

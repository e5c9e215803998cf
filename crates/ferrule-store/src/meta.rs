//! The metadata store trait.

use async_trait::async_trait;
use ferrule_core::acl::AclRule;
use ferrule_core::{DeviceId, Role, TenantId};
use jiff::Timestamp;

use crate::Result;
use crate::model::*;

/// Tenants, users, sessions, API keys, devices and credentials, ACL rules.
///
/// Every call that reads or changes a tenant's object takes the tenant, and a
/// backend must answer [`crate::StoreError::NotFound`] for another tenant's
/// object exactly as for a missing one. Secrets arrive already hashed.
///
/// Deleting a tenant or a device removes, in one transaction, everything
/// this store keeps of it — the broker state of [`crate::BrokerStateStore`]
/// included — and records a [`PendingDeletion`]: other stores (telemetry,
/// the broker's memory) then remove their part, and the caller ends it with
/// [`finish_deletion`](MetaStore::finish_deletion). Until then the id cannot
/// be created again ([`crate::StoreError::Refused`]), and after a crash
/// [`pending_deletions`](MetaStore::pending_deletions) says what to resume.
/// A tenant or device created again under the same id starts empty.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<()>;
    /// Make everything written so far durable and release resources.
    async fn close(&self) -> Result<()>;

    /// Refused while a deletion of this id is pending.
    async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant>;
    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>>;
    async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant>;
    /// Deletes the tenant and everything it owns: users and their login
    /// sessions, API keys, devices and their credentials, ACL rules, the
    /// broker's persisted sessions and retained messages; records it as a
    /// pending deletion. Tenant `default` cannot be deleted (`Refused`).
    async fn delete_tenant(&self, id: &TenantId) -> Result<()>;

    async fn create_user(&self, user: &NewUser) -> Result<User>;
    async fn get_user(&self, tenant: &TenantId, id: &str) -> Result<User>;
    /// Emails are unique across the instance: login does not name a tenant.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<User>>;
    /// Applies the changes and ends the sessions `update.end_sessions` names,
    /// in one transaction that also enforces, against concurrent changes:
    /// [`StoreError::Outranked`] when the user's current role is above
    /// `update.by`; and [`StoreError::Refused`] when the change would leave
    /// the instance without an admin or the user's tenant without an owner
    /// (admins count as owners of tenant `default`).
    ///
    /// [`StoreError::Outranked`]: crate::StoreError::Outranked
    /// [`StoreError::Refused`]: crate::StoreError::Refused
    async fn update_user(&self, tenant: &TenantId, id: &str, update: &UserUpdate) -> Result<User>;
    /// Deletes the user and its sessions, and revokes the API keys it
    /// created and the keys those created (down to [`MAX_KEY_CHAIN`]), in one
    /// transaction with the same rules as [`MetaStore::update_user`]: `by`
    /// must be at least the user's role, and the last admin of the instance
    /// and the last owner of a tenant stay.
    async fn delete_user(&self, tenant: &TenantId, id: &str, by: Option<Role>) -> Result<()>;
    async fn count_users(&self) -> Result<u64>;

    async fn create_session(&self, session: &Session) -> Result<()>;
    /// The session and its user, if the token hash is known (expired or not).
    async fn find_session(&self, token_hash: &str) -> Result<Option<(Session, User)>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    async fn purge_expired_sessions(&self, now: Timestamp) -> Result<u64>;

    async fn create_api_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()>;
    async fn get_api_key(&self, tenant: &TenantId, id: &str) -> Result<ApiKey>;
    /// The key whose secret hashes to `secret_hash`, in any state.
    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKey>>;
    async fn list_api_keys(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<ApiKey>>;
    /// Marks the key revoked, with every key it created and the keys those
    /// created (down to [`MAX_KEY_CHAIN`]), in one transaction; they stay
    /// listed so their use can be audited.
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<ApiKey>;
    /// Who created the key, then who created that key, and so on to the
    /// user at the root; at most [`MAX_KEY_CHAIN`] + 1 links. Empty when the
    /// key has no recorded creator (or does not exist).
    async fn api_key_creators(&self, id: &str) -> Result<Vec<KeyCreator>>;
    /// Every key `creator` (a user id or a key id) created, and the keys
    /// those created, down to [`MAX_KEY_CHAIN`], in any tenant (an admin
    /// creates keys in other tenants).
    async fn api_keys_made_by(&self, creator: &str) -> Result<Vec<ApiKey>>;

    /// Refused while a deletion of this device or its tenant is pending.
    async fn create_device(&self, device: &NewDevice) -> Result<Device>;
    async fn get_device(&self, tenant: &TenantId, id: &DeviceId) -> Result<Device>;
    async fn list_devices(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Device>>;
    async fn update_device(
        &self,
        tenant: &TenantId,
        id: &DeviceId,
        update: &DeviceUpdate,
    ) -> Result<Device>;
    /// Deletes the device, its credentials, and the broker's persisted
    /// sessions of the device and retained messages in its topic space
    /// (`devices/{id}` and below); records it as a pending deletion.
    async fn delete_device(&self, tenant: &TenantId, id: &DeviceId) -> Result<()>;

    /// Deletions recorded and not yet finished, to resume after a restart.
    async fn pending_deletions(&self) -> Result<Vec<PendingDeletion>>;
    /// Ends a pending deletion: every store is done with it, and its id may
    /// be created again.
    async fn finish_deletion(&self, deletion: &PendingDeletion) -> Result<()>;

    async fn add_credential(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        cred: &NewCredential,
    ) -> Result<Credential>;
    async fn list_credentials(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Vec<Credential>>;
    /// Replaces a token or password credential's secret, keeping its id: the
    /// old secret stops working at once.
    async fn rotate_credential(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        id: &str,
        secret_hash: &str,
    ) -> Result<Credential>;
    async fn delete_credential(&self, tenant: &TenantId, device: &DeviceId, id: &str)
    -> Result<()>;
    async fn find_device_by_token(&self, token_hash: &str) -> Result<Option<DeviceLogin>>;
    /// Every registration of a certificate fingerprint, in `tenant` only
    /// when one is named, else across tenants: a fingerprint is unique
    /// within a tenant only. Disabled devices and expired credentials are
    /// included, so that they still count when a login resolves its tenant.
    async fn find_device_by_fingerprint(
        &self,
        fingerprint: &str,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<CertificateRegistration>>;
    /// Marks a certificate registration claimed (once; later calls keep the
    /// first time).
    async fn claim_certificate(&self, tenant: &TenantId, credential_id: &str) -> Result<()>;
    /// The password hashes of a device's password credentials, with expiry.
    async fn device_passwords(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Vec<(String, DeviceLogin)>>;

    async fn create_acl_rule(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule>;
    async fn get_acl_rule(&self, tenant: &TenantId, id: &str) -> Result<AclRule>;
    /// All of a tenant's rules, by id: a tenant has few, and the broker
    /// compiles them all into one policy.
    async fn list_acl_rules(&self, tenant: &TenantId) -> Result<Vec<AclRule>>;
    /// Replaces every field of the rule with this id.
    async fn update_acl_rule(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule>;
    async fn delete_acl_rule(&self, tenant: &TenantId, id: &str) -> Result<()>;
}

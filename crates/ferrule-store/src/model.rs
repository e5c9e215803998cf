//! The records the metadata store keeps.

use ferrule_core::{DeviceId, Role, TenantId};
use jiff::Timestamp;
use serde::Serialize;

/// One page of a listing, ordered by id.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id of the last item when more items follow; pass it back as `after`.
    pub next: Option<String>,
}

/// Which page to read: up to `limit` items with ids greater than `after`.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

/// A tenant (`device: None`) or a device deleted from the metadata store
/// whose data in other stores is still being removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingDeletion {
    pub tenant: TenantId,
    pub device: Option<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: String,
    pub tenant: TenantId,
    pub email: String,
    pub role: Role,
    pub created_at: Timestamp,
}

/// A user as stored, with the password hash that never leaves the server.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

/// A new user; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub tenant: TenantId,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    /// Unique across the instance, like at creation.
    pub email: Option<String>,
    pub password_hash: Option<String>,
    /// The role of whoever makes the change. The change is refused with
    /// [`crate::StoreError::Outranked`] when the user's current role is above
    /// it, checked in the same transaction as the change. `None` is the
    /// operator at the command line.
    pub by: Option<Role>,
    /// Which of the user's sessions end with the change.
    pub end_sessions: EndSessions,
}

/// Which sessions of a user a change ends, in the same transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EndSessions {
    #[default]
    None,
    All,
    /// Every session but the one with this token hash: the session that
    /// changed its own password stays.
    AllBut(String),
}

/// A login session, found by the hash of its bearer token.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    pub user_id: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant: TenantId,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The user id, or the id of the key, that created this key; `None` for
    /// keys created before creators were recorded.
    pub created_by: Option<String>,
}

/// How deep keys may create keys: a key whose chain of creating keys is
/// longer has no rights (and cannot be created).
pub const MAX_KEY_CHAIN: usize = 8;

/// One link in the chain of who created an API key, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyCreator {
    /// The user at the root of the chain, as it is now.
    User(User),
    /// A key that created the link before it.
    Key(ApiKey),
    /// The recorded creator no longer exists.
    Missing(String),
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    pub tenant: TenantId,
    pub id: DeviceId,
    pub name: String,
    pub profile: String,
    /// A JSON object of user-defined attributes.
    pub attributes: serde_json::Value,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub tenant: TenantId,
    pub id: DeviceId,
    pub name: String,
    pub profile: String,
    pub attributes: serde_json::Value,
}

/// Changes to a device; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DeviceUpdate {
    pub name: Option<String>,
    pub profile: Option<String>,
    pub attributes: Option<serde_json::Value>,
    pub enabled: Option<bool>,
}

/// How a device proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A random access token, used as the MQTT username or HTTP bearer.
    Token,
    /// A password, used with the MQTT username `DEVICE@TENANT`.
    Password,
    /// A registered client-certificate fingerprint.
    X509,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::Password => "password",
            CredentialKind::X509 => "x509",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Token, Self::Password, Self::X509]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A device credential as the API shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Credential {
    pub id: String,
    pub device: DeviceId,
    #[serde(rename = "type")]
    pub kind: CredentialKind,
    /// For X.509 credentials, the `sha256:HEX` fingerprint (not a secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A credential to add. `secret_hash` is the token's SHA-256 or the password's
/// argon2id hash; `fingerprint` is set for X.509.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub kind: CredentialKind,
    pub secret_hash: Option<String>,
    pub fingerprint: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// A registration of a client-certificate fingerprint, as a login
/// resolves it.
#[derive(Debug, Clone)]
pub struct CertificateRegistration {
    pub credential_id: String,
    pub login: DeviceLogin,
    /// A device has logged in with the certificate (proving it holds its key)
    /// while naming this tenant.
    pub claimed: bool,
}

/// A device found by one of its credentials.
#[derive(Debug, Clone)]
pub struct DeviceLogin {
    pub tenant: TenantId,
    pub device: DeviceId,
    pub enabled: bool,
    pub credential_expires_at: Option<Timestamp>,
}

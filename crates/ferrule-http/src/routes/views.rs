//! What the API shows of stored records: never a secret, except the
//! `Issued*`/`Created*` shapes that carry one, once.

use super::vocabulary::{ActionName, CredentialType, EffectName, RoleName, SubjectName};
use ferrule_core::acl::AclRule;
use ferrule_store::{ApiKey, Credential, Device, Tenant, User};
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.into(),
            name: t.name,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub tenant: String,
    pub email: String,
    /// admin, owner, editor or viewer.
    #[schema(value_type = RoleName)]
    pub role: ferrule_core::Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            tenant: u.tenant.into(),
            email: u.email,
            role: u.role,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    #[schema(value_type = RoleName)]
    pub role: ferrule_core::Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    /// Who created the key: a user id (`u_…`) or the id of the key that
    /// created it (`k_…`). The key never does more than its creator may do
    /// now. Null for keys created before creators were recorded.
    pub created_by: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            created_by: k.created_by,
        }
    }
}

/// A new API key with its secret; the secret is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// Use as `Authorization: Bearer <secret>`, or as the MQTT password with
    /// username `key:<id>`. Shown once.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub profile: String,
    /// User-defined attributes (a JSON object).
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub enabled: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Whether the device has an MQTT connection open now.
    pub online: bool,
    /// When the device last sent anything over MQTT, as of its last
    /// connect or disconnect; `null` if it never connected.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
    /// When its current (or last) connection opened.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub connected_at: Option<Timestamp>,
    /// When a connection of the device last closed.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disconnected_at: Option<Timestamp>,
    /// The MQTT client id of its current (or last) connection.
    pub client_id: Option<String>,
    /// The address (`IP:PORT`) of its current (or last) connection.
    pub client_address: Option<String>,
    /// The MQTT version of its current (or last) connection: `3.1.1` or `5.0`.
    #[schema(example = "5.0")]
    pub protocol: Option<String>,
    /// Why its last connection ended: `client_disconnect`,
    /// `keepalive_timeout`, `takeover`, `revoked`, `server_shutdown`,
    /// `connection_lost` or `protocol_error`.
    #[schema(example = "keepalive_timeout")]
    pub last_disconnect_reason: Option<String>,
}

impl From<Device> for DeviceView {
    fn from(d: Device) -> Self {
        Self {
            id: d.id.into(),
            name: d.name,
            profile: d.profile,
            attributes: d.attributes,
            enabled: d.enabled,
            created_at: d.created_at,
            updated_at: d.updated_at,
            online: false,
            last_seen: None,
            connected_at: None,
            disconnected_at: None,
            client_id: None,
            client_address: None,
            protocol: None,
            last_disconnect_reason: None,
        }
    }
}

impl DeviceView {
    /// The view with what the connectivity tracker knows of the device.
    pub fn with_connectivity(mut self, c: Option<ferrule_twin::connectivity::DeviceState>) -> Self {
        let Some(c) = c else { return self };
        let time = |ms: Option<i64>| ms.and_then(|ms| Timestamp::from_millisecond(ms).ok());
        self.online = c.online;
        self.last_seen = time(c.last_seen);
        self.connected_at = time(c.connected_at);
        self.disconnected_at = time(c.disconnected_at);
        self.client_id = c.client_id;
        self.client_address = c.client_address;
        self.protocol = c.protocol;
        self.last_disconnect_reason = c.last_reason;
        self
    }
}

/// A new device with its first access token; the token is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedDevice {
    #[serde(flatten)]
    pub device: DeviceView,
    /// The device's access token: the MQTT username, or the bearer for HTTP
    /// ingest. Shown once.
    pub token: String,
    /// The id of the token's credential, to rotate or revoke it.
    pub credential_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub device: String,
    /// token, password or x509.
    #[serde(rename = "type")]
    #[schema(value_type = CredentialType)]
    pub kind: ferrule_store::CredentialKind,
    /// For x509 credentials: the `sha256:HEX` certificate fingerprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

impl From<Credential> for CredentialView {
    fn from(c: Credential) -> Self {
        Self {
            id: c.id,
            device: c.device.into(),
            kind: c.kind,
            fingerprint: c.fingerprint,
            created_at: c.created_at,
            expires_at: c.expires_at,
        }
    }
}

/// A credential as created or rotated; a token credential carries its token,
/// shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCredential {
    #[serde(flatten)]
    pub credential: CredentialView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A tenant ACL rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AclRuleView {
    pub id: String,
    /// allow or deny.
    #[schema(value_type = EffectName)]
    pub effect: ferrule_core::acl::Effect,
    /// publish, subscribe or all.
    #[schema(value_type = ActionName)]
    pub action: ferrule_core::acl::AclAction,
    /// A topic filter in which a whole level may be `{device_id}`.
    #[schema(example = "devices/+/telemetry")]
    pub topic: String,
    /// devices, users (users and API keys), anonymous or all.
    #[schema(value_type = SubjectName)]
    pub subject: ferrule_core::acl::AclSubject,
    /// Higher goes first; deny wins a tie.
    pub priority: i32,
}

impl From<AclRule> for AclRuleView {
    fn from(r: AclRule) -> Self {
        Self {
            id: r.id,
            effect: r.effect,
            action: r.action,
            topic: r.topic,
            subject: r.subject,
            priority: r.priority,
        }
    }
}

/// A time stored as ms since the Unix epoch, as the API shows it.
pub fn millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A versioned resource's view, its version as the ETag (what `If-Match`
/// then names).
pub fn with_etag<T: Serialize>(
    status: axum::http::StatusCode,
    version: u64,
    view: T,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = (status, axum::Json(view)).into_response();
    if let Ok(etag) = axum::http::HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(axum::http::header::ETAG, etag);
    }
    resp
}

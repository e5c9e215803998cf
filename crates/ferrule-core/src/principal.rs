//! Who is acting, once authenticated, whatever the transport (HTTP bearer,
//! MQTT CONNECT, HTTP device ingest).

use crate::{DeviceId, Role, TenantId};

/// An authenticated caller and the tenant it acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub kind: PrincipalKind,
}

impl PrincipalKind {
    /// See [`Principal::session_owner`]; also names whose MQTT connections to
    /// close when an identity is revoked.
    pub fn session_owner(&self) -> String {
        match self {
            PrincipalKind::User { id, .. } => Self::user_owner(id),
            PrincipalKind::ApiKey { id, .. } => Self::api_key_owner(id),
            PrincipalKind::Device { id } => Self::device_owner(id),
            PrincipalKind::Anonymous => "anonymous".to_owned(),
        }
    }

    pub fn user_owner(id: &str) -> String {
        format!("user:{id}")
    }

    pub fn api_key_owner(id: &str) -> String {
        format!("key:{id}")
    }

    pub fn device_owner(id: &DeviceId) -> String {
        format!("device:{id}")
    }
}

/// The kinds of caller Ferrule knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User {
        id: String,
        role: Role,
    },
    ApiKey {
        id: String,
        role: Role,
    },
    Device {
        id: DeviceId,
    },
    /// An MQTT client admitted by `mqtt.allow_anonymous`.
    Anonymous,
}

impl Principal {
    /// Who owns MQTT sessions this principal opens: client ids are scoped to
    /// it within the tenant.
    pub fn session_owner(&self) -> String {
        self.kind.session_owner()
    }

    /// The role for API purposes; devices and anonymous clients have none.
    pub fn role(&self) -> Option<Role> {
        match &self.kind {
            PrincipalKind::User { role, .. } | PrincipalKind::ApiKey { role, .. } => Some(*role),
            PrincipalKind::Device { .. } | PrincipalKind::Anonymous => None,
        }
    }
}

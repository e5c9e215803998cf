//! The MQTT broker's gatekeeper over Ferrule's identity store: the SPEC's
//! login forms, and who may publish and subscribe where.

use std::sync::Arc;

use async_trait::async_trait;
use ferrule_core::secret::TokenKind;
use ferrule_core::topic::{covers, matches};
use ferrule_core::{Principal, PrincipalKind, TenantId};
use ferrule_mqtt::broker::{Access, Gatekeeper, Login, Refusal};
use ferrule_store::{AuthError, Identity};

pub struct StoreGatekeeper {
    identity: Identity,
}

impl StoreGatekeeper {
    pub fn new(identity: Identity) -> Arc<Self> {
        Arc::new(Self { identity })
    }
}

fn refusal(e: AuthError) -> Refusal {
    ferrule_http::observe::AuthFailed {
        transport: "mqtt",
        reason: e.label(),
    }
    .emit();
    match e {
        AuthError::Store(_) => Refusal::Unavailable,
        _ => Refusal::BadCredentials,
    }
}

#[async_trait]
impl Gatekeeper for StoreGatekeeper {
    async fn authenticate(&self, login: Login<'_>) -> Result<Principal, Refusal> {
        let password = login
            .password
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let id = &self.identity;
        let result = match login.username {
            // SPEC: `user:EMAIL` + password, `key:ID` + secret, a device
            // token alone, or `DEVICE@TENANT` + password.
            Some(u) if u.starts_with("user:") => id.authenticate_user(&u[5..], &password).await,
            Some(u) if u.starts_with("key:") => id.authenticate_api_key(&u[4..], &password).await,
            Some(u) if TokenKind::of(u) == Some(TokenKind::Device) => {
                id.authenticate_device_token(u).await
            }
            Some(u) => match u.rsplit_once('@') {
                Some((device, tenant)) => {
                    id.authenticate_device_password(tenant, device, &password)
                        .await
                }
                None => Err(AuthError::Invalid),
            },
            None => match login.cert_fingerprint {
                Some(fp) => id.authenticate_fingerprint(fp).await,
                None => Err(AuthError::Invalid),
            },
        };
        result.map_err(refusal)
    }

    async fn prepare(&self, _tenant: &TenantId) {}

    fn allows(&self, who: &Principal, access: Access, topic: &str) -> bool {
        match &who.kind {
            PrincipalKind::Device { id } => {
                let own = format!("devices/{id}/#");
                match access {
                    Access::Publish => matches(&own, topic),
                    Access::Subscribe => covers(&own, topic),
                }
            }
            PrincipalKind::User { role, .. } | PrincipalKind::ApiKey { role, .. } => {
                access == Access::Subscribe || role.can_write()
            }
            PrincipalKind::Anonymous => true,
        }
    }
}

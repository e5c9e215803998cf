//! The MQTT broker's gatekeeper over Ferrule's identity store: the SPEC's
//! login forms, and who may publish and subscribe where.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use ferrule_core::secret::TokenKind;
use ferrule_core::{Principal, TenantId};
use ferrule_mqtt::broker::{Access, Check, Gatekeeper, Login, Refusal};
use ferrule_store::{AclCache, AuthError, CertificateLogin, Directory, Identity};

pub struct StoreGatekeeper {
    identity: Identity,
    acl: AclCache,
    directory: Directory,
}

impl StoreGatekeeper {
    pub fn new(identity: Identity, acl: AclCache, directory: Directory) -> Arc<Self> {
        Arc::new(Self {
            identity,
            acl,
            directory,
        })
    }
}

fn refusal(e: AuthError) -> Refusal {
    ferrule_http::observe::AuthFailed {
        transport: "mqtt",
        reason: e.label(),
    }
    .emit();
    if matches!(e, AuthError::AmbiguousCertificate) {
        tracing::warn!(
            "refused a client certificate registered in several tenants: the device must name \
             its tenant once (username DEVICE@TENANT or @TENANT without a password, or TLS \
             server name TENANT.<host>), which claims its registration"
        );
    }
    match e {
        AuthError::Store(_) => Refusal::Unavailable,
        AuthError::Busy => Refusal::Busy,
        AuthError::Throttled {
            scope,
            retry_after,
            tenant,
        } => {
            ferrule_http::observe::AuthThrottled {
                channel: "mqtt",
                scope: scope.label(),
                tenant: tenant.as_ref(),
            }
            .emit();
            Refusal::Throttled {
                retry_after_secs: ferrule_http::error::whole_seconds(retry_after),
            }
        }
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
        let certificate = |tenant, device| CertificateLogin {
            fingerprint: login.cert_fingerprint.unwrap_or_default(),
            tenant,
            device,
            server_name: login.server_name,
        };
        let result = match login.username {
            // SPEC: `user:EMAIL` + password, `key:ID` + secret, a device
            // token alone, or `DEVICE@TENANT` + password.
            Some(u) if u.starts_with("user:") => {
                id.authenticate_user(&u[5..], &password, Some(login.peer))
                    .await
            }
            Some(u) if u.starts_with("key:") => id.authenticate_api_key(&u[4..], &password).await,
            Some(u) if TokenKind::of(u) == Some(TokenKind::Device) => {
                id.authenticate_device_token(u).await
            }
            Some(u) => match u.rsplit_once('@') {
                // With a client certificate and no password, `DEVICE@TENANT`
                // or `@TENANT` names the certificate's tenant.
                Some((device, tenant))
                    if password.is_empty() && login.cert_fingerprint.is_some() =>
                {
                    let device = (!device.is_empty()).then_some(device);
                    id.authenticate_certificate(certificate(Some(tenant), device))
                        .await
                }
                Some((device, tenant)) => {
                    id.authenticate_device_password(tenant, device, &password, Some(login.peer))
                        .await
                }
                None => Err(AuthError::Invalid),
            },
            None if login.cert_fingerprint.is_some() => {
                id.authenticate_certificate(certificate(None, None)).await
            }
            None => Err(AuthError::Invalid),
        };
        result.map_err(refusal)
    }

    async fn prepare(&self, tenant: &TenantId) {
        // Load the tenant's rules now so `allows` answers from memory.
        if let Err(e) = self.acl.policy(tenant).await {
            tracing::warn!(tenant = %tenant, error = %e, "loading ACL rules failed; using the last known");
        }
    }

    fn allows(&self, who: &Principal, access: Access, topic: &str) -> bool {
        // A deleted device or tenant keeps no rights, not even on a
        // connection still closing (its last publishes, its will).
        if !self.directory.may_act(who) {
            return false;
        }
        self.acl.current(&who.tenant).allows(who, access, topic)
    }

    fn policy_version(&self, tenant: &TenantId) -> Arc<AtomicU64> {
        // Bumped by rule changes, and by deletions (`AclCache::touch`) so
        // that a deleted identity's cached rights go at once.
        self.acl.version(tenant)
    }

    fn check(&self, who: &Principal, access: Access) -> Check {
        if !self.directory.may_act(who) {
            return Check::Nothing;
        }
        let policy = self.acl.current(&who.tenant);
        if access == Access::Receive && policy.receives_everything(who) {
            return Check::Everything;
        }
        let who = who.clone();
        Check::Each(Box::new(move |topic| policy.allows(&who, access, topic)))
    }
}

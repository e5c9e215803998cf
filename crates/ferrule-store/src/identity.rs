//! The identity service: every way a caller proves who it is, in one place.

use std::sync::Arc;
use std::time::Duration;

use ferrule_core::secret::{self, TokenKind};
use ferrule_core::{DeviceId, Principal, PrincipalKind, Role, TenantId};
use jiff::Timestamp;

use crate::model::*;
use crate::{MetaStore, StoreError};

/// Why authentication failed. Callers answer all of these alike (401 or
/// CONNACK 0x86/0x87) so a prober learns nothing; the variants exist for
/// logs and metrics.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown or wrong credentials")]
    Invalid,
    #[error("credentials expired")]
    Expired,
    #[error("credentials revoked")]
    Revoked,
    #[error("device disabled")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// A label for the `auth_failures_total` metric.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Invalid => "invalid",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::Disabled => "disabled",
            AuthError::Store(_) => "store_error",
        }
    }
}

/// A login's bearer token, shown to the user once.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub token: String,
    pub expires_at: Timestamp,
    pub user: User,
}

/// Authenticates callers and mints secrets, over any [`MetaStore`].
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn MetaStore>,
    session_ttl: Duration,
}

impl Identity {
    pub fn new(store: Arc<dyn MetaStore>, session_ttl: Duration) -> Self {
        Self { store, session_ttl }
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// First start: creates tenant `default` and the admin user. Returns the
    /// generated password when none was configured, for printing once.
    pub async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let default = TenantId::default_tenant();
        match self.store.get_tenant(&default).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                self.store.create_tenant(&default, "Default").await?;
            }
            Err(e) => return Err(e),
        }
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let generated = admin_password.is_none().then(secret::generate_password);
        let password = admin_password.or(generated.as_deref()).unwrap_or_default();
        self.create_user(&default, admin_email, password, Role::Admin)
            .await?;
        Ok(generated)
    }

    /// Creates a user, hashing the password off the async threads.
    pub async fn create_user(
        &self,
        tenant: &TenantId,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<User, StoreError> {
        let user = NewUser {
            id: secret::generate_id("u_"),
            tenant: tenant.clone(),
            email: email.to_owned(),
            role,
            password_hash: hash_password(password).await?,
        };
        self.store.create_user(&user).await
    }

    /// Changes a user's role and/or password; either change ends the user's
    /// sessions, so a demoted user cannot keep its old powers.
    pub async fn update_user(
        &self,
        tenant: &TenantId,
        id: &str,
        role: Option<Role>,
        password: Option<&str>,
    ) -> Result<User, StoreError> {
        let password_hash = match password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let user = self
            .store
            .update_user(
                tenant,
                id,
                &UserUpdate {
                    role,
                    password_hash,
                },
            )
            .await?;
        self.store.delete_user_sessions(id).await?;
        Ok(user)
    }

    /// Email + password → a session token.
    pub async fn login(&self, email: &str, password: &str) -> Result<IssuedSession, AuthError> {
        let user = self.verify_user_password(email, password).await?;
        let token = secret::generate_token(TokenKind::Session);
        let expires_at = Timestamp::now()
            + jiff::SignedDuration::try_from(self.session_ttl).unwrap_or(jiff::SignedDuration::MAX);
        let session = Session {
            token_hash: secret::hash_token(&token),
            user_id: user.id.clone(),
            expires_at,
        };
        self.store.create_session(&session).await?;
        Ok(IssuedSession {
            token,
            expires_at,
            user,
        })
    }

    /// Ends the session behind a bearer token. Unknown tokens are ignored:
    /// logging out twice is not an error.
    pub async fn logout(&self, token: &str) -> Result<(), StoreError> {
        self.store.delete_session(&secret::hash_token(token)).await
    }

    /// A bearer token on the HTTP API: a session token or an API key secret.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        match TokenKind::of(token) {
            Some(TokenKind::Session) => self.authenticate_session(token).await,
            Some(TokenKind::ApiKey) => self.authenticate_api_key_secret(token).await,
            _ => Err(AuthError::Invalid),
        }
    }

    async fn authenticate_session(&self, token: &str) -> Result<Principal, AuthError> {
        let (session, user) = self
            .store
            .find_session(&secret::hash_token(token))
            .await?
            .ok_or(AuthError::Invalid)?;
        if session.expires_at <= Timestamp::now() {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            tenant: user.tenant,
            kind: PrincipalKind::User {
                id: user.id,
                role: user.role,
            },
        })
    }

    async fn authenticate_api_key_secret(&self, secret: &str) -> Result<Principal, AuthError> {
        let key = self
            .store
            .find_api_key(&secret::hash_token(secret))
            .await?
            .ok_or(AuthError::Invalid)?;
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if !key.is_active(Timestamp::now()) {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            tenant: key.tenant,
            kind: PrincipalKind::ApiKey {
                id: key.id,
                role: key.role,
            },
        })
    }

    /// MQTT `key:ID` + secret: the id must match the secret's key.
    pub async fn authenticate_api_key(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<Principal, AuthError> {
        let principal = self.authenticate_api_key_secret(secret).await?;
        match &principal.kind {
            PrincipalKind::ApiKey { id: found, .. } if found == id => Ok(principal),
            _ => Err(AuthError::Invalid),
        }
    }

    /// MQTT `user:EMAIL` + password.
    pub async fn authenticate_user(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let user = self.verify_user_password(email, password).await?;
        Ok(Principal {
            tenant: user.tenant,
            kind: PrincipalKind::User {
                id: user.id,
                role: user.role,
            },
        })
    }

    async fn verify_user_password(&self, email: &str, password: &str) -> Result<User, AuthError> {
        let record = self.store.find_user_by_email(email).await?;
        // Verify against a dummy hash for unknown emails so timing does not
        // reveal which emails have accounts.
        let stored = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| secret::dummy_password_hash().to_owned());
        let ok = verify_password(password, stored).await?;
        match record {
            Some(r) if ok => Ok(r.user),
            _ => Err(AuthError::Invalid),
        }
    }

    /// A device access token (MQTT username or HTTP ingest bearer).
    pub async fn authenticate_device_token(&self, token: &str) -> Result<Principal, AuthError> {
        if TokenKind::of(token) != Some(TokenKind::Device) {
            return Err(AuthError::Invalid);
        }
        let login = self
            .store
            .find_device_by_token(&secret::hash_token(token))
            .await?
            .ok_or(AuthError::Invalid)?;
        device_principal(login)
    }

    /// MQTT `DEVICE@TENANT` + password.
    pub async fn authenticate_device_password(
        &self,
        tenant: &str,
        device: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let (Ok(tenant), Ok(device)) = (TenantId::new(tenant), DeviceId::new(device)) else {
            return Err(AuthError::Invalid);
        };
        let candidates = self.store.device_passwords(&tenant, &device).await?;
        if candidates.is_empty() {
            verify_password(password, secret::dummy_password_hash().to_owned()).await?;
            return Err(AuthError::Invalid);
        }
        for (hash, login) in candidates {
            if verify_password(password, hash).await? {
                return device_principal(login);
            }
        }
        Err(AuthError::Invalid)
    }

    /// A client certificate's fingerprint, `sha256:HEX`.
    pub async fn authenticate_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Principal, AuthError> {
        let fp = secret::normalize_fingerprint(fingerprint).ok_or(AuthError::Invalid)?;
        let login = self
            .store
            .find_device_by_fingerprint(&fp)
            .await?
            .ok_or(AuthError::Invalid)?;
        device_principal(login)
    }

    /// Adds a token credential; returns it with the token, shown once.
    pub async fn issue_device_token(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        expires_at: Option<Timestamp>,
    ) -> Result<(Credential, String), StoreError> {
        let token = secret::generate_token(TokenKind::Device);
        let cred = NewCredential {
            id: secret::generate_id("c_"),
            kind: CredentialKind::Token,
            secret_hash: Some(secret::hash_token(&token)),
            fingerprint: None,
            expires_at,
        };
        let cred = self.store.add_credential(tenant, device, &cred).await?;
        Ok((cred, token))
    }

    /// Adds a password credential (hashed with argon2id).
    pub async fn add_device_password(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        password: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<Credential, StoreError> {
        let cred = NewCredential {
            id: secret::generate_id("c_"),
            kind: CredentialKind::Password,
            secret_hash: Some(hash_password(password).await?),
            fingerprint: None,
            expires_at,
        };
        self.store.add_credential(tenant, device, &cred).await
    }

    /// Registers a client-certificate fingerprint (already normalised).
    pub async fn add_device_fingerprint(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        fingerprint: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<Credential, StoreError> {
        let cred = NewCredential {
            id: secret::generate_id("c_"),
            kind: CredentialKind::X509,
            secret_hash: None,
            fingerprint: Some(fingerprint.to_owned()),
            expires_at,
        };
        self.store.add_credential(tenant, device, &cred).await
    }

    /// Replaces a token credential's secret; the old token stops working.
    pub async fn rotate_device_token(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        id: &str,
    ) -> Result<(Credential, String), StoreError> {
        let current = self.store.list_credentials(tenant, device).await?;
        match current.iter().find(|c| c.id == id) {
            None => return Err(StoreError::NotFound { kind: "credential" }),
            Some(c) if c.kind != CredentialKind::Token => {
                return Err(StoreError::Refused(format!(
                    "only token credentials rotate here; this one is {}: add a new one and delete this",
                    c.kind.as_str()
                )));
            }
            Some(_) => {}
        }
        let token = secret::generate_token(TokenKind::Device);
        let cred = self
            .store
            .rotate_credential(tenant, device, id, &secret::hash_token(&token))
            .await?;
        Ok((cred, token))
    }

    /// Creates an API key; returns it with its secret, shown once.
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        name: &str,
        role: Role,
        expires_at: Option<Timestamp>,
    ) -> Result<(ApiKey, String), StoreError> {
        let secret = secret::generate_token(TokenKind::ApiKey);
        let key = ApiKey {
            id: secret::generate_id("k_"),
            tenant: tenant.clone(),
            name: name.to_owned(),
            role,
            created_at: Timestamp::now(),
            expires_at,
            revoked_at: None,
        };
        self.store
            .create_api_key(&key, &secret::hash_token(&secret))
            .await?;
        Ok((key, secret))
    }
}

fn device_principal(login: DeviceLogin) -> Result<Principal, AuthError> {
    if !login.enabled {
        return Err(AuthError::Disabled);
    }
    if login
        .credential_expires_at
        .is_some_and(|e| e <= Timestamp::now())
    {
        return Err(AuthError::Expired);
    }
    Ok(Principal {
        tenant: login.tenant,
        kind: PrincipalKind::Device { id: login.device },
    })
}

async fn hash_password(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| StoreError::Backend(format!("password hashing failed: {e}")))
}

async fn verify_password(password: &str, stored: String) -> Result<bool, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secret::verify_password(&password, &stored))
        .await
        .map_err(|e| StoreError::Backend(format!("password check failed: {e}")))
}

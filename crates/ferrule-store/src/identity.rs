//! The identity service: every way a caller proves who it is, in one place.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrule_core::secret::{self, TokenKind};
use ferrule_core::{DeviceId, Principal, PrincipalKind, Role, TenantId};
use jiff::Timestamp;

use crate::auth::{Attempt, Busy, Hasher, Scope, Throttle};
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
    /// A client certificate registered in several tenants, presented by a
    /// device that did not name its tenant.
    #[error("certificate registered in several tenants; the device must name its tenant")]
    AmbiguousCertificate,
    /// Too many recent failures for this account or address: refused
    /// without checking the password.
    #[error("too many failed logins; retry in {retry_after:?}")]
    Throttled {
        scope: Scope,
        retry_after: Duration,
        /// The account's tenant, when the account exists.
        tenant: Option<TenantId>,
    },
    /// The password-hashing queue is full.
    #[error("password checking is busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Busy> for AuthError {
    fn from(_: Busy) -> Self {
        AuthError::Busy
    }
}

impl AuthError {
    /// A label for the `auth_failures_total` metric.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Invalid => "invalid",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::Disabled => "disabled",
            AuthError::AmbiguousCertificate => "ambiguous_certificate",
            AuthError::Throttled { .. } => "throttled",
            AuthError::Busy => "busy",
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

/// What [`Identity::bootstrap`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// First start: created the admin, with the generated password when none
    /// was configured (for printing once).
    Created { generated_password: Option<String> },
    /// The data directory already has users; a configured admin password
    /// is not used.
    Existing,
}

/// A change to a user, as a caller or the operator asks for it; `None`
/// leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserChange<'a> {
    pub role: Option<Role>,
    pub email: Option<&'a str>,
    pub password: Option<&'a str>,
    /// The role of the caller making the change, which must be at least the
    /// user's current role; `None` for the operator at the command line.
    pub by: Option<Role>,
    /// When users change their own password: the bearer token of the
    /// session doing it, which stays while their other sessions end.
    pub keep_session: Option<&'a str>,
}

/// What a device presenting a client certificate says about itself.
#[derive(Debug, Clone, Copy)]
pub struct CertificateLogin<'a> {
    /// The certificate's fingerprint, `sha256:HEX`.
    pub fingerprint: &'a str,
    /// The tenant named by the username `DEVICE@TENANT` or `@TENANT`.
    pub tenant: Option<&'a str>,
    /// The device named by the username `DEVICE@TENANT`.
    pub device: Option<&'a str>,
    /// The TLS server name (SNI) the device connected to: its first label
    /// names a tenant when a tenant has that id.
    pub server_name: Option<&'a str>,
}

/// Where the identity service reads the time to judge expiry (sessions,
/// API keys, device credentials): the system clock, or in tests one they
/// move, so expiry is checked without sleeping.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Timestamp::now))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

/// Authenticates callers and mints secrets, over any [`MetaStore`].
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn MetaStore>,
    session_ttl: Duration,
    hasher: Hasher,
    throttle: Option<Arc<Throttle>>,
    clock: Clock,
}

impl Identity {
    /// Hashes on tokio's blocking threads and never throttles: for the
    /// command line and tests; a server adds [`Identity::with_limits`].
    pub fn new(store: Arc<dyn MetaStore>, session_ttl: Duration) -> Self {
        Self {
            store,
            session_ttl,
            hasher: Hasher::Blocking,
            throttle: None,
            clock: Clock::system(),
        }
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks passwords on `hasher` and, with a throttle, backs off after
    /// failed logins.
    pub fn with_limits(mut self, hasher: Hasher, throttle: Option<Arc<Throttle>>) -> Self {
        self.hasher = hasher;
        self.throttle = throttle;
        self
    }

    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.store
    }

    /// First start: creates tenant `default` and the admin user, unless the
    /// data directory already has users.
    pub async fn bootstrap(
        &self,
        admin_email: &str,
        admin_password: Option<&str>,
    ) -> Result<Bootstrap, StoreError> {
        let default = TenantId::default_tenant();
        match self.store.get_tenant(&default).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                self.store.create_tenant(&default, "Default").await?;
            }
            Err(e) => return Err(e),
        }
        if self.store.count_users().await? > 0 {
            return Ok(Bootstrap::Existing);
        }
        let generated = admin_password.is_none().then(secret::generate_password);
        let password = admin_password.or(generated.as_deref()).unwrap_or_default();
        self.create_user(&default, admin_email, password, Role::Admin)
            .await?;
        Ok(Bootstrap::Created {
            generated_password: generated,
        })
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
            password_hash: self.hash_password(password).await?,
        };
        self.store.create_user(&user).await
    }

    /// Changes a user. A new role ends all the user's sessions, so a demoted
    /// user cannot keep its old powers; a new password ends them all but
    /// `keep_session`. The store checks `by` against the user's current role
    /// and keeps the last admin and owners, atomically with the change.
    pub async fn update_user(
        &self,
        tenant: &TenantId,
        id: &str,
        change: UserChange<'_>,
    ) -> Result<User, StoreError> {
        let password_hash = match change.password {
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        let end_sessions = match (change.role, change.password, change.keep_session) {
            (Some(_), _, _) | (None, Some(_), None) => EndSessions::All,
            (None, Some(_), Some(keep)) => EndSessions::AllBut(secret::hash_token(keep)),
            (None, None, _) => EndSessions::None,
        };
        let update = UserUpdate {
            role: change.role,
            email: change.email.map(str::to_owned),
            password_hash,
            by: change.by,
            end_sessions,
        };
        self.store.update_user(tenant, id, &update).await
    }

    /// Checks a user's own current password before they change their own
    /// password or email; a wrong one is a failed authentication.
    pub async fn check_own_password(
        &self,
        tenant: &TenantId,
        user_id: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        let user = self.store.get_user(tenant, user_id).await?;
        match self
            .verify_user_password(&user.email, password, source)
            .await
        {
            Ok(found) if found.id == user.id => Ok(()),
            Ok(_) => Err(AuthError::Invalid),
            Err(e) => Err(e),
        }
    }

    /// The operator's way back from a lost password: sets a new password
    /// (the one given, else a generated one) and ends all the user's
    /// sessions. Returns the user and the generated password.
    pub async fn reset_password(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> Result<(User, Option<String>), StoreError> {
        let user = self
            .store
            .find_user_by_email(email)
            .await?
            .ok_or(StoreError::NotFound { kind: "user" })?
            .user;
        let generated = password.is_none().then(secret::generate_password);
        let password = password.or(generated.as_deref()).unwrap_or_default();
        let change = UserChange {
            password: Some(password),
            ..UserChange::default()
        };
        let user = self.update_user(&user.tenant, &user.id, change).await?;
        Ok((user, generated))
    }

    /// Email + password → a session token.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<IssuedSession, AuthError> {
        let user = self.verify_user_password(email, password, source).await?;
        let token = secret::generate_token(TokenKind::Session);
        let expires_at = self.clock.now()
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
        if session.expires_at <= self.clock.now() {
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
        if !key.is_active(self.clock.now()) {
            return Err(AuthError::Expired);
        }
        let role = key.role.min(self.key_ceiling(&key.id).await?);
        Ok(Principal {
            tenant: key.tenant,
            kind: PrincipalKind::ApiKey { id: key.id, role },
        })
    }

    /// The most a key may do because of who created it: the lowest role
    /// along its chain of creating keys up to the user who started it, as
    /// they are now. A key whose chain holds a revoked, expired or deleted
    /// creator, or is longer than [`MAX_KEY_CHAIN`], may do nothing. A chain
    /// that ends without a recorded creator (keys from before creators were
    /// recorded) sets no ceiling above its keys' own roles.
    async fn key_ceiling(&self, key_id: &str) -> Result<Role, AuthError> {
        let chain = self.store.api_key_creators(key_id).await?;
        if chain.len() > MAX_KEY_CHAIN {
            return Err(AuthError::Revoked);
        }
        let now = self.clock.now();
        let mut ceiling = Role::Admin;
        for link in chain {
            match link {
                KeyCreator::User(user) => return Ok(ceiling.min(user.role)),
                KeyCreator::Key(key) if key.is_active(now) => ceiling = ceiling.min(key.role),
                KeyCreator::Key(_) | KeyCreator::Missing(_) => return Err(AuthError::Revoked),
            }
        }
        Ok(ceiling)
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
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let user = self.verify_user_password(email, password, source).await?;
        Ok(Principal {
            tenant: user.tenant,
            kind: PrincipalKind::User {
                id: user.id,
                role: user.role,
            },
        })
    }

    async fn verify_user_password(
        &self,
        email: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<User, AuthError> {
        let record = self.store.find_user_by_email(email).await?;
        // Unknown emails are throttled alike and verified against a dummy
        // hash, so neither backoff nor timing reveals which have accounts.
        let tenant = record.as_ref().map(|r| r.user.tenant.clone());
        let attempt = self.begin(&format!("user:{}", email.to_lowercase()), source, tenant)?;
        let stored = match &record {
            Some(r) => r.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let ok = self.hasher.verify(password, stored).await?;
        match record {
            Some(r) if ok => {
                settle(attempt, true);
                Ok(r.user)
            }
            _ => {
                settle(attempt, false);
                Err(AuthError::Invalid)
            }
        }
    }

    /// Admits a password attempt past the backoff, if there is one.
    fn begin(
        &self,
        account: &str,
        source: Option<IpAddr>,
        tenant: Option<TenantId>,
    ) -> Result<Option<Attempt>, AuthError> {
        let Some(throttle) = &self.throttle else {
            return Ok(None);
        };
        throttle
            .begin(account, source)
            .map(Some)
            .map_err(|t| AuthError::Throttled {
                scope: t.scope,
                retry_after: t.retry_after,
                tenant,
            })
    }

    /// A hash to verify against when the account does not exist, so that a
    /// login for an unknown email takes as long as a wrong password; made
    /// once, on the hashing pool.
    async fn dummy_hash(&self) -> Result<String, AuthError> {
        static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
        DUMMY
            .get_or_try_init(|| self.hasher.hash("ferrule-timing-equaliser"))
            .await
            .cloned()
            .map_err(AuthError::from)
    }

    async fn hash_password(&self, password: &str) -> Result<String, StoreError> {
        self.hasher
            .hash(password)
            .await
            .map_err(|_| StoreError::Busy)
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
        device_principal(login, self.clock.now())
    }

    /// MQTT `DEVICE@TENANT` + password.
    pub async fn authenticate_device_password(
        &self,
        tenant: &str,
        device: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let (Ok(tenant), Ok(device)) = (TenantId::new(tenant), DeviceId::new(device)) else {
            return Err(AuthError::Invalid);
        };
        let account = format!("device:{device}@{tenant}");
        let attempt = self.begin(&account, source, Some(tenant.clone()))?;
        let candidates = self.store.device_passwords(&tenant, &device).await?;
        if candidates.is_empty() {
            let dummy = self.dummy_hash().await?;
            self.hasher.verify(password, dummy).await?;
            settle(attempt, false);
            return Err(AuthError::Invalid);
        }
        for (hash, login) in candidates {
            if self.hasher.verify(password, hash).await? {
                settle(attempt, true);
                return device_principal(login, self.clock.now());
            }
        }
        settle(attempt, false);
        Err(AuthError::Invalid)
    }

    /// A client certificate, with whatever the device says about its tenant.
    ///
    /// A fingerprint is unique within a tenant only, so the tenant comes
    /// first from the device: named by the username (and then, with
    /// `DEVICE@TENANT`, the registration must be that device's), else by the
    /// TLS server name's first label when a tenant has that id. Named, the
    /// fingerprint is looked up in that tenant only, and the registration
    /// becomes *claimed*: the TLS handshake proved the device holds the
    /// certificate's key. A device that names nothing resolves by
    /// fingerprint across tenants: the one claimed registration if exactly
    /// one is claimed, else the only registration if there is one; anything
    /// else is ambiguous and refused. So registering another tenant's
    /// certificate (a public value) can neither capture nor block a device
    /// that has named its tenant once.
    pub async fn authenticate_certificate(
        &self,
        login: CertificateLogin<'_>,
    ) -> Result<Principal, AuthError> {
        let fp = secret::normalize_fingerprint(login.fingerprint).ok_or(AuthError::Invalid)?;
        let named = match (login.tenant, login.server_name) {
            (Some(t), _) => Some(TenantId::new(t).map_err(|_| AuthError::Invalid)?),
            (None, Some(host)) => self.tenant_named_by_host(host).await?,
            (None, None) => None,
        };
        let Some(tenant) = named else {
            let registrations = self.store.find_device_by_fingerprint(&fp, None).await?;
            return device_principal(resolve_unnamed(registrations)?.login, self.clock.now());
        };
        let found = self
            .store
            .find_device_by_fingerprint(&fp, Some(&tenant))
            .await?
            .into_iter()
            .next()
            .ok_or(AuthError::Invalid)?;
        if login
            .device
            .is_some_and(|d| d != found.login.device.as_str())
        {
            return Err(AuthError::Invalid);
        }
        let principal = device_principal(found.login, self.clock.now())?;
        if !found.claimed {
            self.store
                .claim_certificate(&tenant, &found.credential_id)
                .await?;
        }
        Ok(principal)
    }

    /// The tenant a TLS server name names: its first label, when a tenant
    /// has that id (`acme.mqtt.example.com` → `acme`).
    async fn tenant_named_by_host(&self, host: &str) -> Result<Option<TenantId>, StoreError> {
        let label = host.split('.').next().unwrap_or_default();
        let Ok(tenant) = TenantId::new(label) else {
            return Ok(None);
        };
        match self.store.get_tenant(&tenant).await {
            Ok(_) => Ok(Some(tenant)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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
            secret_hash: Some(self.hash_password(password).await?),
            fingerprint: None,
            expires_at,
        };
        self.store.add_credential(tenant, device, &cred).await
    }

    /// Registers a client-certificate fingerprint (already normalised); a
    /// conflict only with a registration in the same tenant.
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

    /// Creates an API key on behalf of `created_by` (a user id or a key
    /// id); returns it with its secret, shown once.
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        name: &str,
        role: Role,
        expires_at: Option<Timestamp>,
        created_by: &str,
    ) -> Result<(ApiKey, String), StoreError> {
        if self.store.api_key_creators(created_by).await?.len() >= MAX_KEY_CHAIN {
            return Err(StoreError::Refused(format!(
                "keys may create keys at most {MAX_KEY_CHAIN} deep: create this key as a user"
            )));
        }
        let secret = secret::generate_token(TokenKind::ApiKey);
        let key = ApiKey {
            id: secret::generate_id("k_"),
            tenant: tenant.clone(),
            name: name.to_owned(),
            role,
            created_at: self.clock.now(),
            expires_at,
            revoked_at: None,
            created_by: Some(created_by.to_owned()),
        };
        self.store
            .create_api_key(&key, &secret::hash_token(&secret))
            .await?;
        Ok((key, secret))
    }
}

/// The registration a device that names no tenant logs in to (see
/// [`Identity::authenticate_certificate`]). Disabled devices and expired
/// credentials count here, so that letting one lapse never hands the
/// certificate to another tenant.
fn resolve_unnamed(
    registrations: Vec<CertificateRegistration>,
) -> Result<CertificateRegistration, AuthError> {
    let claimed = registrations.iter().filter(|r| r.claimed).count();
    let mut candidates = registrations
        .into_iter()
        .filter(|r| claimed == 0 || r.claimed);
    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Ok(only),
        (None, _) => Err(AuthError::Invalid),
        (Some(_), Some(_)) => Err(AuthError::AmbiguousCertificate),
    }
}

/// The device a login names, unless it is disabled or its credential
/// expired by `now`.
fn device_principal(login: DeviceLogin, now: Timestamp) -> Result<Principal, AuthError> {
    if !login.enabled {
        return Err(AuthError::Disabled);
    }
    if login.credential_expires_at.is_some_and(|e| e <= now) {
        return Err(AuthError::Expired);
    }
    Ok(Principal {
        tenant: login.tenant,
        kind: PrincipalKind::Device { id: login.device },
    })
}

/// Records an attempt's outcome with the backoff.
fn settle(attempt: Option<Attempt>, ok: bool) {
    match (attempt, ok) {
        (Some(a), true) => a.succeeded(),
        (Some(a), false) => a.failed(),
        (None, _) => {}
    }
}

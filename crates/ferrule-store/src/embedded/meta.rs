//! [`MetaStore`] on SQLite.

use async_trait::async_trait;
use ferrule_core::acl::AclRule;
use ferrule_core::{DeviceId, Role, TenantId};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::EmbeddedStore;
use crate::model::*;
use crate::{MetaStore, Result, StoreError};

#[async_trait]
impl MetaStore for EmbeddedStore {
    async fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn close(&self) -> Result<()> {
        // Fold the WAL into the main file so a copied data directory is whole.
        self.write(|tx| {
            tx.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn create_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let t = Tenant {
            id: id.clone(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
        };
        let row = t.clone();
        self.write(move |tx| {
            refuse_while_deleting(tx, &row.id, None)?;
            tx.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![row.id.as_str(), row.name, ms(row.created_at)],
            )
            .map_err(conflict("tenant"))?;
            Ok(())
        })
        .await?;
        Ok(t)
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        let id = id.clone();
        self.read(move |c| get_tenant(c, &id)).await
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        let page = page.clone();
        self.read(move |c| {
            paged(&page, |after, limit| {
                let mut st = c.prepare_cached(
                    "SELECT id, name, created_at FROM tenants WHERE id > ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = st.query_map(params![after, limit], tenant_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    async fn rename_tenant(&self, id: &TenantId, name: &str) -> Result<Tenant> {
        let (id, name) = (id.clone(), name.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE tenants SET name = ?2 WHERE id = ?1",
                params![id.as_str(), name],
            )?;
            found(n, "tenant")?;
            get_tenant(tx, &id)
        })
        .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<()> {
        let id = id.clone();
        if id == TenantId::default_tenant() {
            return Err(StoreError::Refused(DEFAULT_TENANT_STAYS.into()));
        }
        self.write(move |tx| {
            // Credentials reference devices, not tenants: clear them first.
            // Everything else references the tenant and goes with it (ON
            // DELETE CASCADE): users and their sessions, API keys, devices,
            // ACL rules, MQTT sessions with their messages, retained messages.
            tx.execute(
                "DELETE FROM device_credentials WHERE tenant = ?1",
                [id.as_str()],
            )?;
            let n = tx.execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()])?;
            found(n, "tenant")?;
            record_deletion(tx, &id, None)
        })
        .await
    }

    async fn create_user(&self, user: &NewUser) -> Result<User> {
        let u = user.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (id, tenant, email, role, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    u.id,
                    u.tenant.as_str(),
                    u.email,
                    u.role.as_str(),
                    u.password_hash,
                    ms(Timestamp::now())
                ],
            )
            .map_err(conflict("user"))?;
            get_user(tx, Some(&u.tenant), &u.id)
        })
        .await
    }

    async fn get_user(&self, tenant: &TenantId, id: &str) -> Result<User> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| get_user(c, Some(&tenant), &id)).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let email = email.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLS}, password_hash FROM users WHERE email = ?1"),
                [email],
                |r| {
                    Ok(UserRecord {
                        user: user_row(r)?,
                        password_hash: r.get(5)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn list_users(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<User>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| tenant_page(c, "users", USER_COLS, &tenant, &page, user_row))
            .await
    }

    async fn update_user(&self, tenant: &TenantId, id: &str, update: &UserUpdate) -> Result<User> {
        let (tenant, id, up) = (tenant.clone(), id.to_owned(), update.clone());
        self.write(move |tx| {
            let before = get_user(tx, Some(&tenant), &id)?;
            if up.by.is_some_and(|by| before.role > by) {
                return Err(StoreError::Outranked);
            }
            if let Some(role) = up.role {
                tx.execute(
                    "UPDATE users SET role = ?2 WHERE id = ?1",
                    params![id, role.as_str()],
                )?;
                keeps_an_admin_and_an_owner(tx, &before)?;
            }
            if let Some(email) = &up.email {
                tx.execute(
                    "UPDATE users SET email = ?2 WHERE id = ?1",
                    params![id, email],
                )
                .map_err(conflict("user"))?;
            }
            if let Some(hash) = &up.password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, hash],
                )?;
            }
            match &up.end_sessions {
                EndSessions::None => {}
                EndSessions::All => {
                    tx.execute("DELETE FROM sessions WHERE user_id = ?1", [&id])?;
                }
                EndSessions::AllBut(keep) => {
                    tx.execute(
                        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2",
                        params![id, keep],
                    )?;
                }
            }
            get_user(tx, Some(&tenant), &id)
        })
        .await
    }

    async fn delete_user(&self, tenant: &TenantId, id: &str, by: Option<Role>) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let before = get_user(tx, Some(&tenant), &id)?;
            if by.is_some_and(|by| before.role > by) {
                return Err(StoreError::Outranked);
            }
            tx.execute(
                "DELETE FROM users WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            keeps_an_admin_and_an_owner(tx, &before)?;
            revoke_keys_made_by(tx, &id, Timestamp::now())
        })
        .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    async fn create_session(&self, session: &Session) -> Result<()> {
        let s = session.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                params![s.token_hash, s.user_id, ms(s.expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, token_hash: &str) -> Result<Option<(Session, User)>> {
        let hash = token_hash.to_owned();
        self.read(move |c| {
            let found = c
                .query_row(
                    "SELECT user_id, expires_at FROM sessions WHERE token_hash = ?1",
                    [&hash],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()?;
            let Some((user_id, expires)) = found else {
                return Ok(None);
            };
            let user = get_user(c, None, &user_id)?;
            let session = Session {
                token_hash: hash,
                user_id,
                expires_at: from_ms(expires)?,
            };
            Ok(Some((session, user)))
        })
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let hash = token_hash.to_owned();
        self.write(move |tx| {
            tx.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash])?;
            Ok(())
        })
        .await
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> Result<u64> {
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", [ms(now)])? as u64)
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        let (k, hash) = (key.clone(), secret_hash.to_owned());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO api_keys (id, tenant, name, role, secret_hash, created_at, expires_at, revoked_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
                params![k.id, k.tenant.as_str(), k.name, k.role.as_str(), hash, ms(k.created_at), k.expires_at.map(ms), k.created_by],
            )
            .map_err(conflict("api key"))?;
            Ok(())
        })
        .await
    }

    async fn get_api_key(&self, tenant: &TenantId, id: &str) -> Result<ApiKey> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| get_api_key(c, &tenant, &id)).await
    }

    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let hash = secret_hash.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = ?1"),
                [hash],
                api_key_row,
            )
            .optional()?)
        })
        .await
    }

    async fn list_api_keys(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<ApiKey>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| tenant_page(c, "api_keys", KEY_COLS, &tenant, &page, api_key_row))
            .await
    }

    async fn revoke_api_key(&self, tenant: &TenantId, id: &str, at: Timestamp) -> Result<ApiKey> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id, ms(at)],
            )?;
            found(n, "api key")?;
            revoke_keys_made_by(tx, &id, at)?;
            get_api_key(tx, &tenant, &id)
        })
        .await
    }

    async fn api_key_creators(&self, id: &str) -> Result<Vec<KeyCreator>> {
        let id = id.to_owned();
        self.read(move |c| {
            let mut chain = Vec::new();
            let mut next = c
                .query_row(
                    "SELECT created_by FROM api_keys WHERE id = ?1",
                    [&id],
                    |r| r.get::<_, Option<String>>(0),
                )
                .optional()?
                .flatten();
            while let Some(creator) = next.take() {
                if chain.len() > MAX_KEY_CHAIN {
                    break;
                }
                let key = c
                    .query_row(
                        &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"),
                        [&creator],
                        api_key_row,
                    )
                    .optional()?;
                let link = match key {
                    Some(key) => {
                        next = key.created_by.clone();
                        KeyCreator::Key(key)
                    }
                    None => match get_user(c, None, &creator) {
                        Ok(user) => KeyCreator::User(user),
                        Err(StoreError::NotFound { .. }) => KeyCreator::Missing(creator),
                        Err(e) => return Err(e),
                    },
                };
                chain.push(link);
            }
            Ok(chain)
        })
        .await
    }

    async fn api_keys_made_by(&self, creator: &str) -> Result<Vec<ApiKey>> {
        let creator = creator.to_owned();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "WITH RECURSIVE {MADE_BY} SELECT {KEY_COLS} FROM api_keys WHERE id IN (SELECT id FROM made) ORDER BY id"
            ))?;
            let rows = st.query_map(params![creator, MAX_KEY_CHAIN as i64], api_key_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn create_device(&self, device: &NewDevice) -> Result<Device> {
        let d = device.clone();
        self.write(move |tx| {
            refuse_while_deleting(tx, &d.tenant, Some(&d.id))?;
            let now = ms(Timestamp::now());
            tx.execute(
                "INSERT INTO devices (tenant, id, name, profile, attributes, enabled, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                params![d.tenant.as_str(), d.id.as_str(), d.name, d.profile, d.attributes.to_string(), now],
            )
            .map_err(conflict("device"))?;
            get_device(tx, &d.tenant, &d.id)
        })
        .await
    }

    async fn get_device(&self, tenant: &TenantId, id: &DeviceId) -> Result<Device> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.read(move |c| get_device(c, &tenant, &id)).await
    }

    async fn list_devices(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<Device>> {
        let (tenant, page) = (tenant.clone(), page.clone());
        self.read(move |c| {
            paged(&page, |after, limit| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {DEVICE_COLS} FROM devices WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?;
                let rows = st.query_map(params![tenant.as_str(), after, limit], device_row)?;
                rows.map(|r| r.map_err(StoreError::from)?).collect()
            })
        })
        .await
    }

    async fn update_device(
        &self,
        tenant: &TenantId,
        id: &DeviceId,
        update: &DeviceUpdate,
    ) -> Result<Device> {
        let (tenant, id, up) = (tenant.clone(), id.clone(), update.clone());
        self.write(move |tx| {
            let cur = get_device(tx, &tenant, &id)?;
            tx.execute(
                "UPDATE devices SET name = ?3, profile = ?4, attributes = ?5, enabled = ?6, updated_at = ?7
                 WHERE tenant = ?1 AND id = ?2",
                params![
                    tenant.as_str(),
                    id.as_str(),
                    up.name.unwrap_or(cur.name),
                    up.profile.unwrap_or(cur.profile),
                    up.attributes.unwrap_or(cur.attributes).to_string(),
                    up.enabled.unwrap_or(cur.enabled),
                    ms(Timestamp::now()),
                ],
            )?;
            get_device(tx, &tenant, &id)
        })
        .await
    }

    async fn delete_device(&self, tenant: &TenantId, id: &DeviceId) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.write(move |tx| {
            // Credentials go with the device (ON DELETE CASCADE).
            let n = tx.execute(
                "DELETE FROM devices WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id.as_str()],
            )?;
            found(n, "device")?;
            // The broker's state of it: its sessions (their messages
            // cascade), and what is retained in its topic space, `devices/ID`
            // and below ('0' follows '/': a range, exact whatever the id).
            tx.execute(
                "DELETE FROM mqtt_sessions WHERE tenant = ?1 AND owner = ?2",
                params![
                    tenant.as_str(),
                    ferrule_core::PrincipalKind::device_owner(&id)
                ],
            )?;
            tx.execute(
                "DELETE FROM mqtt_retained WHERE tenant = ?1
                 AND (topic = ?2 OR (topic >= ?2 || '/' AND topic < ?2 || '0'))",
                params![tenant.as_str(), format!("devices/{id}")],
            )?;
            record_deletion(tx, &tenant, Some(&id))
        })
        .await
    }

    async fn pending_deletions(&self) -> Result<Vec<PendingDeletion>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT tenant, device FROM pending_deletions ORDER BY tenant, device",
            )?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (tenant, device) = row?;
                let bad = |e: ferrule_core::IdError| StoreError::backend("pending deletion", e);
                out.push(PendingDeletion {
                    tenant: TenantId::new(tenant).map_err(bad)?,
                    device: match device.as_str() {
                        "" => None,
                        d => Some(DeviceId::new(d).map_err(bad)?),
                    },
                });
            }
            Ok(out)
        })
        .await
    }

    async fn finish_deletion(&self, deletion: &PendingDeletion) -> Result<()> {
        let d = deletion.clone();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM pending_deletions WHERE tenant = ?1 AND device = ?2",
                params![
                    d.tenant.as_str(),
                    d.device.as_ref().map_or("", |d| d.as_str())
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_credential(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        cred: &NewCredential,
    ) -> Result<Credential> {
        let (tenant, device, cred) = (tenant.clone(), device.clone(), cred.clone());
        self.write(move |tx| {
            get_device(tx, &tenant, &device)?;
            tx.execute(
                "INSERT INTO device_credentials (id, tenant, device, kind, secret_hash, fingerprint, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    cred.id,
                    tenant.as_str(),
                    device.as_str(),
                    cred.kind.as_str(),
                    cred.secret_hash,
                    cred.fingerprint,
                    ms(Timestamp::now()),
                    cred.expires_at.map(ms),
                ],
            )
            .map_err(conflict("credential"))?;
            get_credential(tx, &tenant, &device, &cred.id)
        })
        .await
    }

    async fn list_credentials(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Vec<Credential>> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.read(move |c| {
            get_device(c, &tenant, &device)?;
            let mut st = c.prepare_cached(&format!(
                "SELECT {CRED_COLS} FROM device_credentials WHERE tenant = ?1 AND device = ?2 ORDER BY created_at, id"
            ))?;
            let rows = st.query_map(params![tenant.as_str(), device.as_str()], credential_row)?;
            rows.map(|r| r.map_err(StoreError::from)?).collect()
        })
        .await
    }

    async fn rotate_credential(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        id: &str,
        secret_hash: &str,
    ) -> Result<Credential> {
        let (tenant, device, id, hash) = (
            tenant.clone(),
            device.clone(),
            id.to_owned(),
            secret_hash.to_owned(),
        );
        self.write(move |tx| {
            let cur = get_credential(tx, &tenant, &device, &id)?;
            if cur.kind == CredentialKind::X509 {
                return Err(StoreError::Refused(
                    "an x509 credential has no secret to rotate: register the new fingerprint, then delete this one".into(),
                ));
            }
            tx.execute("UPDATE device_credentials SET secret_hash = ?2 WHERE id = ?1", params![id, hash])?;
            get_credential(tx, &tenant, &device, &id)
        })
        .await
    }

    async fn delete_credential(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        id: &str,
    ) -> Result<()> {
        let (tenant, device, id) = (tenant.clone(), device.clone(), id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM device_credentials WHERE tenant = ?1 AND device = ?2 AND id = ?3",
                params![tenant.as_str(), device.as_str(), id],
            )?;
            found(n, "credential")
        })
        .await
    }

    async fn find_device_by_token(&self, token_hash: &str) -> Result<Option<DeviceLogin>> {
        let hash = token_hash.to_owned();
        self.read(move |c| {
            login_query(c, "c.kind = 'token' AND c.secret_hash = ?1", [&hash])
                .map(|mut v| v.pop().map(|(_, l)| l))
        })
        .await
    }

    async fn find_device_by_fingerprint(
        &self,
        fingerprint: &str,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<CertificateRegistration>> {
        let (fp, tenant) = (fingerprint.to_owned(), tenant.cloned());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT c.id, c.tenant, c.device, d.enabled, c.expires_at, c.claimed_at IS NOT NULL
                 FROM device_credentials c JOIN devices d ON d.tenant = c.tenant AND d.id = c.device
                 WHERE c.kind = 'x509' AND c.fingerprint = ?1 AND (?2 IS NULL OR c.tenant = ?2)
                 ORDER BY c.tenant",
            )?;
            let rows = st.query_map(params![fp, tenant.as_ref().map(|t| t.as_str())], |r| {
                Ok(CertificateRegistration {
                    credential_id: r.get(0)?,
                    login: DeviceLogin {
                        tenant: tenant_col(r, 1)?,
                        device: device_col(r, 2)?,
                        enabled: r.get(3)?,
                        credential_expires_at: opt_ts_col(r, 4)?,
                    },
                    claimed: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn claim_certificate(&self, tenant: &TenantId, credential_id: &str) -> Result<()> {
        let (tenant, id) = (tenant.clone(), credential_id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE device_credentials SET claimed_at = coalesce(claimed_at, ?3)
                 WHERE tenant = ?1 AND id = ?2 AND kind = 'x509'",
                params![tenant.as_str(), id, ms(Timestamp::now())],
            )?;
            found(n, "credential")
        })
        .await
    }

    async fn device_passwords(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Vec<(String, DeviceLogin)>> {
        let (tenant, device) = (tenant.clone(), device.clone());
        self.read(move |c| {
            login_query(
                c,
                "c.kind = 'password' AND c.tenant = ?1 AND c.device = ?2",
                params![tenant.as_str(), device.as_str()],
            )
        })
        .await
    }

    async fn create_acl_rule(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule> {
        let (tenant, r) = (tenant.clone(), rule.clone());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO acl_rules (tenant, id, effect, action, topic, subject, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    tenant.as_str(),
                    r.id,
                    r.effect.as_str(),
                    r.action.as_str(),
                    r.topic,
                    r.subject.as_str(),
                    r.priority
                ],
            )
            .map_err(conflict("acl rule"))?;
            get_acl_rule(tx, &tenant, &r.id)
        })
        .await
    }

    async fn get_acl_rule(&self, tenant: &TenantId, id: &str) -> Result<AclRule> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |c| get_acl_rule(c, &tenant, &id)).await
    }

    async fn list_acl_rules(&self, tenant: &TenantId) -> Result<Vec<AclRule>> {
        let tenant = tenant.clone();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ACL_COLS} FROM acl_rules WHERE tenant = ?1 ORDER BY id"
            ))?;
            let rows = st.query_map([tenant.as_str()], acl_rule_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn update_acl_rule(&self, tenant: &TenantId, rule: &AclRule) -> Result<AclRule> {
        let (tenant, r) = (tenant.clone(), rule.clone());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE acl_rules SET effect = ?3, action = ?4, topic = ?5, subject = ?6, priority = ?7
                 WHERE tenant = ?1 AND id = ?2",
                params![
                    tenant.as_str(),
                    r.id,
                    r.effect.as_str(),
                    r.action.as_str(),
                    r.topic,
                    r.subject.as_str(),
                    r.priority
                ],
            )?;
            found(n, "acl rule")?;
            get_acl_rule(tx, &tenant, &r.id)
        })
        .await
    }

    async fn delete_acl_rule(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.write(move |tx| {
            let n = tx.execute(
                "DELETE FROM acl_rules WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id],
            )?;
            found(n, "acl rule")
        })
        .await
    }
}

const USER_COLS: &str = "id, tenant, email, role, created_at";
const KEY_COLS: &str = "id, tenant, name, role, created_at, expires_at, revoked_at, created_by";

/// A recursive CTE `made(id, depth)`: the keys created by `?1` (a user or
/// key id), and the keys those created, down to `?2` levels.
const MADE_BY: &str = "made(id, depth) AS (
        SELECT id, 1 FROM api_keys WHERE created_by = ?1
        UNION
        SELECT k.id, made.depth + 1 FROM api_keys k JOIN made ON k.created_by = made.id
        WHERE made.depth < ?2
    )";
pub(super) const DEVICE_COLS: &str =
    "tenant, id, name, profile, attributes, enabled, created_at, updated_at";
const CRED_COLS: &str = "id, device, kind, fingerprint, created_at, expires_at";
const ACL_COLS: &str = "id, effect, action, topic, subject, priority";

pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(super) fn from_ms(v: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(v).map_err(|e| StoreError::backend(format!("bad timestamp {v}"), e))
}

/// Converts a column that fails to parse into a rusqlite conversion error, so
/// row mappers can stay `rusqlite::Result`.
fn bad_column(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn ts_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    Timestamp::from_millisecond(r.get(idx)?).map_err(|e| bad_column(idx, e))
}

fn opt_ts_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    r.get::<_, Option<i64>>(idx)?
        .map(|v| Timestamp::from_millisecond(v).map_err(|e| bad_column(idx, e)))
        .transpose()
}

pub(super) fn tenant_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<TenantId> {
    TenantId::new(r.get::<_, String>(idx)?).map_err(|e| bad_column(idx, e))
}

pub(super) fn device_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<DeviceId> {
    DeviceId::new(r.get::<_, String>(idx)?).map_err(|e| bad_column(idx, e))
}

fn role_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<Role> {
    r.get::<_, String>(idx)?
        .parse()
        .map_err(|e| bad_column(idx, e))
}

/// A column holding one of the words of an ACL enum (`allow`, `publish`…).
fn word_col<T: std::str::FromStr>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(idx)?
        .parse()
        .map_err(|e| bad_column(idx, e))
}

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: tenant_col(r, 0)?,
        name: r.get(1)?,
        created_at: ts_col(r, 2)?,
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        tenant: tenant_col(r, 1)?,
        email: r.get(2)?,
        role: role_col(r, 3)?,
        created_at: ts_col(r, 4)?,
    })
}

fn api_key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: r.get(0)?,
        tenant: tenant_col(r, 1)?,
        name: r.get(2)?,
        role: role_col(r, 3)?,
        created_at: ts_col(r, 4)?,
        expires_at: opt_ts_col(r, 5)?,
        revoked_at: opt_ts_col(r, 6)?,
        created_by: r.get(7)?,
    })
}

pub(super) fn device_row(r: &Row<'_>) -> rusqlite::Result<Result<Device>> {
    let attributes: String = r.get(4)?;
    let attributes = match serde_json::from_str(&attributes) {
        Ok(v) => v,
        Err(e) => return Ok(Err(StoreError::backend("device attributes", e))),
    };
    Ok(Ok(Device {
        tenant: tenant_col(r, 0)?,
        id: device_col(r, 1)?,
        name: r.get(2)?,
        profile: r.get(3)?,
        attributes,
        enabled: r.get(5)?,
        created_at: ts_col(r, 6)?,
        updated_at: ts_col(r, 7)?,
    }))
}

fn credential_row(r: &Row<'_>) -> rusqlite::Result<Result<Credential>> {
    let kind: String = r.get(2)?;
    let Some(kind) = CredentialKind::parse(&kind) else {
        return Ok(Err(StoreError::corrupt(format!(
            "unknown credential kind {kind:?}"
        ))));
    };
    Ok(Ok(Credential {
        id: r.get(0)?,
        device: device_col(r, 1)?,
        kind,
        fingerprint: r.get(3)?,
        created_at: ts_col(r, 4)?,
        expires_at: opt_ts_col(r, 5)?,
    }))
}

fn acl_rule_row(r: &Row<'_>) -> rusqlite::Result<AclRule> {
    Ok(AclRule {
        id: r.get(0)?,
        effect: word_col(r, 1)?,
        action: word_col(r, 2)?,
        topic: r.get(3)?,
        subject: word_col(r, 4)?,
        priority: r.get(5)?,
    })
}

fn get_tenant(c: &Connection, id: &TenantId) -> Result<Tenant> {
    c.query_row(
        "SELECT id, name, created_at FROM tenants WHERE id = ?1",
        [id.as_str()],
        tenant_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound { kind: "tenant" })
}

/// With `tenant = None` the user is looked up across tenants (sessions).
fn get_user(c: &Connection, tenant: Option<&TenantId>, id: &str) -> Result<User> {
    let user = c
        .query_row(
            &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )
        .optional()?;
    user.filter(|u| tenant.is_none_or(|t| &u.tenant == t))
        .ok_or(StoreError::NotFound { kind: "user" })
}

fn get_api_key(c: &Connection, tenant: &TenantId, id: &str) -> Result<ApiKey> {
    c.query_row(
        &format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant = ?1 AND id = ?2"),
        params![tenant.as_str(), id],
        api_key_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound { kind: "api key" })
}

fn get_device(c: &Connection, tenant: &TenantId, id: &DeviceId) -> Result<Device> {
    c.query_row(
        &format!("SELECT {DEVICE_COLS} FROM devices WHERE tenant = ?1 AND id = ?2"),
        params![tenant.as_str(), id.as_str()],
        device_row,
    )
    .optional()?
    .unwrap_or(Err(StoreError::NotFound { kind: "device" }))
}

fn get_credential(
    c: &Connection,
    tenant: &TenantId,
    device: &DeviceId,
    id: &str,
) -> Result<Credential> {
    c.query_row(
        &format!("SELECT {CRED_COLS} FROM device_credentials WHERE tenant = ?1 AND device = ?2 AND id = ?3"),
        params![tenant.as_str(), device.as_str(), id],
        credential_row,
    )
    .optional()?
    .unwrap_or(Err(StoreError::NotFound { kind: "credential" }))
}

fn get_acl_rule(c: &Connection, tenant: &TenantId, id: &str) -> Result<AclRule> {
    c.query_row(
        &format!("SELECT {ACL_COLS} FROM acl_rules WHERE tenant = ?1 AND id = ?2"),
        params![tenant.as_str(), id],
        acl_rule_row,
    )
    .optional()?
    .ok_or(StoreError::NotFound { kind: "acl rule" })
}

/// Refuses a change that took away the last admin of the instance or the
/// last owner of `before`'s tenant; run after the change, in its
/// transaction, so concurrent changes cannot both pass. Admins count as
/// owners of tenant `default`, where they live.
fn keeps_an_admin_and_an_owner(tx: &Connection, before: &User) -> Result<()> {
    if before.role == Role::Admin {
        let admins: i64 =
            tx.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get(0)
            })?;
        if admins == 0 {
            return Err(StoreError::Refused(
                "the instance would have no admin; make another user admin first".into(),
            ));
        }
    }
    let in_default = before.tenant == TenantId::default_tenant();
    if before.role == Role::Owner || (before.role == Role::Admin && in_default) {
        let owners: i64 = tx.query_row(
            "SELECT count(*) FROM users WHERE tenant = ?1
             AND (role = 'owner' OR (role = 'admin' AND ?2))",
            params![before.tenant.as_str(), in_default],
            |r| r.get(0),
        )?;
        if owners == 0 {
            return Err(StoreError::Refused(format!(
                "tenant {} would have no owner; promote another user first",
                before.tenant
            )));
        }
    }
    Ok(())
}

/// Revokes every key `creator` made, transitively (see [`MADE_BY`]).
fn revoke_keys_made_by(tx: &Connection, creator: &str, at: Timestamp) -> Result<()> {
    tx.execute(
        &format!(
            "WITH RECURSIVE {MADE_BY}
             UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE id IN (SELECT id FROM made)"
        ),
        params![creator, MAX_KEY_CHAIN as i64, ms(at)],
    )?;
    Ok(())
}

/// Credentials matching `filter` joined with their device, as
/// `(secret_hash, login)` pairs.
fn login_query(
    c: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<(String, DeviceLogin)>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT coalesce(c.secret_hash, ''), c.tenant, c.device, d.enabled, c.expires_at
         FROM device_credentials c JOIN devices d ON d.tenant = c.tenant AND d.id = c.device
         WHERE {filter}"
    ))?;
    let rows = st.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            DeviceLogin {
                tenant: tenant_col(r, 1)?,
                device: device_col(r, 2)?,
                enabled: r.get(3)?,
                credential_expires_at: opt_ts_col(r, 4)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Reads `limit + 1` rows to learn whether another page follows.
pub(super) fn paged<T: HasId>(
    page: &PageRequest,
    query: impl FnOnce(&str, i64) -> Result<Vec<T>>,
) -> Result<Page<T>> {
    let limit = page.limit.max(1) as usize;
    let mut items = query(page.after.as_deref().unwrap_or(""), limit as i64 + 1)?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| i.page_key())
    } else {
        None
    };
    Ok(Page { items, next })
}

/// One page of a tenant's rows of `table` (columns `cols`, read by `row`)
/// in id order.
fn tenant_page<T: HasId>(
    c: &Connection,
    table: &str,
    cols: &str,
    tenant: &TenantId,
    page: &PageRequest,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Page<T>> {
    paged(page, |after, limit| {
        let mut st = c.prepare_cached(&format!(
            "SELECT {cols} FROM {table} WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let rows = st.query_map(params![tenant.as_str(), after, limit], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
}

pub(super) trait HasId {
    fn page_key(&self) -> String;
}

impl HasId for Tenant {
    fn page_key(&self) -> String {
        self.id.to_string()
    }
}
impl HasId for User {
    fn page_key(&self) -> String {
        self.id.clone()
    }
}
impl HasId for ApiKey {
    fn page_key(&self) -> String {
        self.id.clone()
    }
}
impl HasId for Device {
    fn page_key(&self) -> String {
        self.id.to_string()
    }
}

const DEFAULT_TENANT_STAYS: &str =
    "tenant `default` cannot be deleted: it holds the instance's admins";

fn record_deletion(
    tx: &rusqlite::Transaction<'_>,
    tenant: &TenantId,
    device: Option<&DeviceId>,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO pending_deletions (tenant, device) VALUES (?1, ?2)",
        params![tenant.as_str(), device.map_or("", |d| d.as_str())],
    )?;
    Ok(())
}

/// An id whose deletion is still running cannot be taken again yet: its
/// old data may not all be gone.
fn refuse_while_deleting(
    c: &Connection,
    tenant: &TenantId,
    device: Option<&DeviceId>,
) -> Result<()> {
    let pending: Option<String> = c
        .query_row(
            "SELECT device FROM pending_deletions WHERE tenant = ?1 AND device IN ('', ?2) LIMIT 1",
            params![tenant.as_str(), device.map_or("", |d| d.as_str())],
            |r| r.get(0),
        )
        .optional()?;
    match (pending, device) {
        (None, _) => Ok(()),
        (Some(d), Some(device)) if !d.is_empty() => Err(StoreError::Refused(format!(
            "device {device} is still being deleted; retry in a moment"
        ))),
        _ => Err(StoreError::Refused(format!(
            "tenant {tenant} is still being deleted; retry in a moment"
        ))),
    }
}

pub(super) fn found(n: usize, kind: &'static str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound { kind })
    } else {
        Ok(())
    }
}

pub(super) fn conflict(kind: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Conflict { kind },
        _ => e.into(),
    }
}

//! [`BrokerStateStore`] on SQLite.

use async_trait::async_trait;
use bytes::Bytes;
use ferrule_core::stored::{
    SessionRef, StoredDelivery, StoredMessage, StoredSession, StoredSubscription,
};
use ferrule_core::{MessageProperties, QoS, TenantId};
use rusqlite::{Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::EmbeddedStore;
use crate::{BrokerStateStore, Result, StoreError};

/// JSON shape of MQTT 5 application properties.
#[derive(Serialize, Deserialize)]
struct PropertiesJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_topic: Option<String>,
    /// Hex, since correlation data is binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_data: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
}

fn properties_json(p: &Option<MessageProperties>) -> Option<String> {
    let p = p.as_ref()?;
    let json = PropertiesJson {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type.as_ref().map(|s| s.to_string()),
        response_topic: p.response_topic.as_ref().map(|s| s.to_string()),
        correlation_data: p.correlation_data.as_ref().map(hex::encode),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    serde_json::to_string(&json).ok()
}

fn parse_properties(text: Option<String>) -> Result<Option<MessageProperties>> {
    let Some(text) = text else { return Ok(None) };
    let j: PropertiesJson = serde_json::from_str(&text)
        .map_err(|e| StoreError::backend("stored message properties", e))?;
    Ok(Some(MessageProperties {
        payload_format_indicator: j.payload_format_indicator,
        content_type: j.content_type.map(Into::into),
        response_topic: j.response_topic.map(Into::into),
        correlation_data: j
            .correlation_data
            .and_then(|h| hex::decode(h).ok())
            .map(Bytes::from),
        user_properties: j
            .user_properties
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    }))
}

#[derive(Serialize, Deserialize)]
struct SubscriptionJson {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    subscription_id: Option<u32>,
}

fn qos(v: u8) -> Result<QoS> {
    QoS::from_u8(v).ok_or_else(|| StoreError::corrupt(format!("stored QoS {v}")))
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::backend("stored broker state", e)
}

fn save_session(tx: &Transaction<'_>, s: &StoredSession) -> Result<()> {
    let subs: Vec<SubscriptionJson> = s
        .subscriptions
        .iter()
        .map(|x| SubscriptionJson {
            filter: x.filter.clone(),
            qos: x.qos as u8,
            no_local: x.no_local,
            retain_as_published: x.retain_as_published,
            subscription_id: x.subscription_id,
        })
        .collect();
    let tenant = s.tenant.as_str();
    tx.execute(
        "INSERT INTO mqtt_sessions (tenant, client_id, expires_at, expiry_secs, subscriptions, inbound_qos2, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant, owner, client_id) DO UPDATE SET expires_at = ?3, expiry_secs = ?4,
             subscriptions = ?5, inbound_qos2 = ?6",
        params![
            tenant,
            s.client_id,
            s.expires_at_ms,
            s.expiry_secs as i64,
            serde_json::to_string(&subs).map_err(json_err)?,
            serde_json::to_string(&s.inbound_qos2).map_err(json_err)?,
            s.owner,
        ],
    )?;
    tx.execute(
        "DELETE FROM mqtt_session_messages WHERE tenant = ?1 AND client_id = ?2 AND owner = ?3",
        params![tenant, s.client_id, s.owner],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO mqtt_session_messages (tenant, client_id, seq, topic, payload, qos, retain, properties,
             expires_at, origin_client, received_at, delivery_qos, delivery_retain, subscription_ids, packet_id, released,
             owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    for (seq, d) in s.deliveries.iter().enumerate() {
        let m = &d.message;
        insert.execute(params![
            tenant,
            s.client_id,
            seq as i64,
            m.topic,
            &m.payload[..],
            m.qos as u8,
            m.retain,
            properties_json(&m.properties),
            m.expires_at_ms,
            m.origin_client,
            m.received_at_ms,
            d.qos as u8,
            d.retain,
            serde_json::to_string(&d.subscription_ids).map_err(json_err)?,
            d.packet_id,
            d.released,
            s.owner,
        ])?;
    }
    Ok(())
}

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, Result<StoredDelivery>)> {
    let tenant: String = r.get(0)?;
    let client: String = r.get(1)?;
    let owner: String = r.get(16)?;
    let build = || -> Result<StoredDelivery> {
        let subscription_ids: String = r.get(13)?;
        Ok(StoredDelivery {
            message: StoredMessage {
                topic: r.get(3)?,
                payload: Bytes::from(r.get::<_, Vec<u8>>(4)?),
                qos: qos(r.get(5)?)?,
                retain: r.get(6)?,
                properties: parse_properties(r.get(7)?)?,
                expires_at_ms: r.get(8)?,
                origin_client: r.get(9)?,
                received_at_ms: r.get(10)?,
            },
            qos: qos(r.get(11)?)?,
            retain: r.get(12)?,
            subscription_ids: serde_json::from_str(&subscription_ids).map_err(json_err)?,
            packet_id: r.get(14)?,
            released: r.get(15)?,
        })
    };
    Ok((tenant, client, owner, build()))
}

#[async_trait]
impl BrokerStateStore for EmbeddedStore {
    async fn save_broker_state(
        &self,
        sessions: Vec<StoredSession>,
        ended: Vec<SessionRef>,
        retained: Vec<(TenantId, StoredMessage)>,
        cleared: Vec<(TenantId, String)>,
    ) -> Result<()> {
        self.write(move |tx| {
            for r in &ended {
                tx.execute(
                    "DELETE FROM mqtt_sessions WHERE tenant = ?1 AND owner = ?2 AND client_id = ?3",
                    params![r.tenant.as_str(), r.owner, r.client_id],
                )?;
            }
            for s in &sessions {
                // A session of a deleted tenant has nowhere to live.
                match save_session(tx, s) {
                    Err(e) if e.is_foreign_key_violation() => {}
                    other => other?,
                }
            }
            for (tenant, topic) in &cleared {
                tx.execute(
                    "DELETE FROM mqtt_retained WHERE tenant = ?1 AND topic = ?2",
                    params![tenant.as_str(), topic],
                )?;
            }
            for (tenant, m) in &retained {
                let saved = tx.execute(
                    "INSERT INTO mqtt_retained (tenant, topic, payload, qos, properties, expires_at, origin_client, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (tenant, topic) DO UPDATE SET payload = ?3, qos = ?4, properties = ?5,
                         expires_at = ?6, origin_client = ?7, received_at = ?8",
                    params![
                        tenant.as_str(),
                        m.topic,
                        &m.payload[..],
                        m.qos as u8,
                        properties_json(&m.properties),
                        m.expires_at_ms,
                        m.origin_client,
                        m.received_at_ms,
                    ],
                );
                match saved {
                    Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn load_sessions(&self) -> Result<Vec<StoredSession>> {
        self.load_sessions_of(None).await
    }

    async fn load_retained(&self) -> Result<Vec<(TenantId, StoredMessage)>> {
        self.load_retained_of(None).await
    }

    async fn load_tenant_sessions(&self, tenant: &TenantId) -> Result<Vec<StoredSession>> {
        self.load_sessions_of(Some(tenant.to_string())).await
    }

    async fn load_tenant_retained(&self, tenant: &TenantId) -> Result<Vec<StoredMessage>> {
        Ok(self
            .load_retained_of(Some(tenant.to_string()))
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }
}

impl EmbeddedStore {
    /// Stored sessions, of one tenant or (`None`) of all.
    async fn load_sessions_of(&self, tenant: Option<String>) -> Result<Vec<StoredSession>> {
        self.read(move |c| {
            let mut sessions = Vec::new();
            let mut st = c.prepare(
                "SELECT tenant, client_id, expires_at, expiry_secs, subscriptions, inbound_qos2, owner
                 FROM mqtt_sessions WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, owner, client_id",
            )?;
            let rows = st.query_map([&tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            for row in rows {
                let (tenant, client_id, expires_at_ms, expiry_secs, subs, inbound, owner) = row?;
                let decoded = (|| -> Result<StoredSession> {
                    let subs: Vec<SubscriptionJson> =
                        serde_json::from_str(&subs).map_err(json_err)?;
                    let subscriptions = subs
                        .into_iter()
                        .map(|s| {
                            Ok(StoredSubscription {
                                filter: s.filter,
                                qos: qos(s.qos)?,
                                no_local: s.no_local,
                                retain_as_published: s.retain_as_published,
                                subscription_id: s.subscription_id,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(StoredSession {
                        tenant: TenantId::new(&tenant).map_err(|e| StoreError::Backend(e.into()))?,
                        owner: owner.clone(),
                        client_id: client_id.clone(),
                        expires_at_ms,
                        expiry_secs: expiry_secs.max(0) as u64,
                        subscriptions,
                        deliveries: Vec::new(),
                        inbound_qos2: serde_json::from_str(&inbound).map_err(json_err)?,
                    })
                })();
                let what = || format!("tenant {tenant}, owner {owner}, client {client_id}");
                if let Some(session) = crate::unreadable::skip("mqtt_sessions", what, decoded) {
                    sessions.push(session);
                }
            }
            let mut st = c.prepare(
                "SELECT tenant, client_id, seq, topic, payload, qos, retain, properties, expires_at, origin_client,
                        received_at, delivery_qos, delivery_retain, subscription_ids, packet_id, released, owner
                 FROM mqtt_session_messages WHERE ?1 IS NULL OR tenant = ?1
                 ORDER BY tenant, owner, client_id, seq",
            )?;
            let rows = st.query_map([&tenant], delivery_row)?;
            for row in rows {
                let (tenant, client, owner, delivery) = row?;
                if let Some(s) = sessions
                    .iter_mut()
                    .find(|s| s.tenant.as_str() == tenant && s.client_id == client && s.owner == owner)
                {
                    let what = || format!("tenant {tenant}, owner {owner}, client {client}");
                    if let Some(d) = crate::unreadable::skip("mqtt_session_messages", what, delivery) {
                        s.deliveries.push(d);
                    }
                }
            }
            Ok(sessions)
        })
        .await
    }

    /// Retained messages, of one tenant or (`None`) of all.
    async fn load_retained_of(
        &self,
        tenant: Option<String>,
    ) -> Result<Vec<(TenantId, StoredMessage)>> {
        self.read(move |c| {
            let mut st = c.prepare(
                "SELECT tenant, topic, payload, qos, properties, expires_at, origin_client, received_at
                 FROM mqtt_retained WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, topic",
            )?;
            let rows = st.query_map([&tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, u8>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (tenant, topic, payload, q, props, expires_at_ms, origin_client, received_at_ms) = row?;
                let decoded = (|| -> Result<(TenantId, StoredMessage)> {
                    Ok((
                        TenantId::new(&tenant).map_err(|e| StoreError::Backend(e.into()))?,
                        StoredMessage {
                            topic: topic.clone(),
                            payload: Bytes::from(payload),
                            qos: qos(q)?,
                            retain: true,
                            properties: parse_properties(props)?,
                            expires_at_ms,
                            origin_client,
                            received_at_ms,
                        },
                    ))
                })();
                let what = || format!("tenant {tenant}, topic {topic}");
                if let Some(m) = crate::unreadable::skip("mqtt_retained", what, decoded) {
                    out.push(m);
                }
            }
            Ok(out)
        })
        .await
    }
}

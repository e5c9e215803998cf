-- MQTT broker state that survives restarts: persistent sessions with their
-- undelivered QoS 1/2 messages, and retained messages.
-- Client ids are scoped to the identity (owner) that opened the session.
CREATE TABLE mqtt_sessions (
    tenant         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    owner          TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    expiry_secs    INTEGER NOT NULL,
    -- JSON: [{filter, qos, no_local, retain_as_published, subscription_id}]
    subscriptions  TEXT NOT NULL,
    -- JSON: [packet id, ...]
    inbound_qos2   TEXT NOT NULL,
    PRIMARY KEY (tenant, owner, client_id)
) STRICT;

CREATE TABLE mqtt_session_messages (
    tenant          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    topic           TEXT NOT NULL,
    payload         BLOB NOT NULL,
    qos             INTEGER NOT NULL,
    retain          INTEGER NOT NULL,
    properties      TEXT,
    expires_at      INTEGER,
    origin_client   TEXT,
    received_at     INTEGER NOT NULL,
    delivery_qos    INTEGER NOT NULL,
    delivery_retain INTEGER NOT NULL,
    subscription_ids TEXT NOT NULL,
    packet_id       INTEGER,
    released        INTEGER NOT NULL,
    PRIMARY KEY (tenant, owner, client_id, seq),
    FOREIGN KEY (tenant, owner, client_id) REFERENCES mqtt_sessions(tenant, owner, client_id) ON DELETE CASCADE
) STRICT;

CREATE TABLE mqtt_retained (
    tenant         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    topic          TEXT NOT NULL,
    payload        BLOB NOT NULL,
    qos            INTEGER NOT NULL,
    properties     TEXT,
    expires_at     INTEGER,
    origin_client  TEXT,
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, topic)
) STRICT;

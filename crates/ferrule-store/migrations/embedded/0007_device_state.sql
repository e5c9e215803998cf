-- What a device is doing and what it is told: its twin and the twin's
-- history, commands and their outbox, connectivity, and device profiles.
-- Everything of a device goes with it (ON DELETE CASCADE).

CREATE TABLE twins (
    tenant            TEXT NOT NULL,
    device            TEXT NOT NULL,
    -- JSON objects; *_meta mirror their shape with each leaf's update time.
    reported          TEXT NOT NULL,
    reported_meta     TEXT NOT NULL,
    reported_version  INTEGER NOT NULL,
    desired           TEXT NOT NULL,
    desired_meta      TEXT NOT NULL,
    desired_version   INTEGER NOT NULL,
    version           INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant, device),
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE twin_history (
    tenant   TEXT NOT NULL,
    device   TEXT NOT NULL,
    -- The twin's version after this change.
    version  INTEGER NOT NULL,
    ts       INTEGER NOT NULL,
    -- 'reported' or 'desired'.
    section  TEXT NOT NULL,
    -- Who changed it: device:ID, user:EMAIL, key:ID.
    actor    TEXT NOT NULL,
    -- The merge patch as applied (JSON).
    patch    TEXT NOT NULL,
    PRIMARY KEY (tenant, device, version),
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX twin_history_by_time ON twin_history(tenant, device, ts);
CREATE INDEX twin_history_for_retention ON twin_history(tenant, ts);

CREATE TABLE commands (
    tenant        TEXT NOT NULL,
    device        TEXT NOT NULL,
    id            TEXT NOT NULL,
    -- Order of sending within the device.
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    params        TEXT NOT NULL,
    -- pending | delivered | succeeded | failed | expired
    state         TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    delivered_at  INTEGER,
    finished_at   INTEGER,
    response      TEXT,
    error         TEXT,
    PRIMARY KEY (tenant, id),
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX commands_by_device ON commands(tenant, device, seq);
CREATE INDEX commands_open ON commands(state) WHERE state IN ('pending', 'delivered');

CREATE TABLE device_connectivity (
    tenant           TEXT NOT NULL,
    device           TEXT NOT NULL,
    online           INTEGER NOT NULL,
    last_seen        INTEGER,
    connected_at     INTEGER,
    disconnected_at  INTEGER,
    client_id        TEXT,
    client_address   TEXT,
    protocol         TEXT,
    last_reason      TEXT,
    PRIMARY KEY (tenant, device),
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE device_profiles (
    tenant            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    -- JSON Schemas (JSON text), or NULL for none.
    telemetry_schema  TEXT,
    state_schema      TEXT,
    retention_days    INTEGER,
    -- Free JSON object that rules and dashboards read.
    defaults          TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;

-- Device lists filtered by profile, and the in-use check before a
-- profile is deleted.
CREATE INDEX devices_by_profile ON devices(tenant, profile);

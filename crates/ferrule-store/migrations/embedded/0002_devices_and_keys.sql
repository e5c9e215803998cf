-- API keys, devices and device credentials.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys(tenant, id);

CREATE TABLE devices (
    tenant      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    profile     TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE device_credentials (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    device       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    -- SHA-256 of a token or the argon2id hash of a password.
    secret_hash  TEXT,
    fingerprint  TEXT UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX device_credentials_by_device ON device_credentials(tenant, device);
-- Tokens are looked up by hash on every connect; passwords are not.
CREATE UNIQUE INDEX device_credentials_by_token
    ON device_credentials(secret_hash) WHERE kind = 'token';

-- Who created each API key (a user id, or the id of the key that created
-- it): a key never exceeds its creator's current rights. Keys from before
-- this version have none recorded and keep their own role.
ALTER TABLE api_keys ADD COLUMN created_by TEXT;
CREATE INDEX api_keys_by_creator ON api_keys(created_by);

-- Certificate fingerprints become unique per tenant, not across the
-- instance: a fingerprint is public, so first come first served let one
-- tenant capture or block another's device. The column-level UNIQUE cannot
-- be dropped in SQLite, so the table is rebuilt. `claimed_at` records when
-- a device first proved it holds the certificate's key while naming this
-- tenant; registrations from before this version were unique, so each is
-- the one its device has been using: they count as claimed.
CREATE TABLE device_credentials_v5 (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    device       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    -- SHA-256 of a token or the argon2id hash of a password.
    secret_hash  TEXT,
    fingerprint  TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    claimed_at   INTEGER,
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;
INSERT INTO device_credentials_v5
    (id, tenant, device, kind, secret_hash, fingerprint, created_at, expires_at, claimed_at)
    SELECT id, tenant, device, kind, secret_hash, fingerprint, created_at, expires_at,
           CASE WHEN kind = 'x509' THEN created_at END
    FROM device_credentials;
DROP TABLE device_credentials;
ALTER TABLE device_credentials_v5 RENAME TO device_credentials;
CREATE INDEX device_credentials_by_device ON device_credentials(tenant, device);
CREATE UNIQUE INDEX device_credentials_by_token
    ON device_credentials(secret_hash) WHERE kind = 'token';
-- Found by fingerprint across tenants at login; unique within a tenant.
CREATE UNIQUE INDEX device_credentials_by_fingerprint
    ON device_credentials(fingerprint, tenant) WHERE kind = 'x509';

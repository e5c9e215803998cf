-- Tenant ACL rules: who may publish or subscribe where over MQTT
-- (ferrule_core::acl). The primary key leads with the tenant, so it is also
-- the index by which a tenant's rules are loaded.
CREATE TABLE acl_rules (
    tenant    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id        TEXT NOT NULL,
    effect    TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    action    TEXT NOT NULL CHECK (action IN ('publish', 'subscribe', 'all')),
    topic     TEXT NOT NULL,
    subject   TEXT NOT NULL CHECK (subject IN ('devices', 'users', 'anonymous', 'all')),
    priority  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

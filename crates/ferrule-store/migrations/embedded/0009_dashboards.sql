-- Dashboards: a tenant's grids of widgets, and the read-only share link of
-- each (kept as the SHA-256 of its token, like every other secret). A
-- tenant's dashboards go with the tenant.

CREATE TABLE dashboards (
    tenant       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    -- JSON array of widgets, as the API validated them.
    widgets      TEXT NOT NULL,
    -- 1 on creation, +1 on every change of the layout.
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- SHA-256 (hex) of the share token; NULL when not shared.
    share_hash   TEXT UNIQUE,
    shared_at    INTEGER,
    PRIMARY KEY (tenant, id)
) STRICT;

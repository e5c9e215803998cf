-- Custom apps: a tenant's static HTML5 bundles, served under
-- /apps/{tenant}/{app}/, each with an API key of its own. The files are
-- kept here, as blobs, rather than in the data directory: a bundle is
-- replaced in one transaction (a refused or half-written upload leaves the
-- old one whole), it goes with its app and its tenant by the foreign keys
-- below, and a backup of the database holds it. Bundles are small (the API
-- caps them at 50 MiB uncompressed).

CREATE TABLE apps (
    tenant      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- The app's own API key (in api_keys, hashed like every key) and its
    -- secret, which the app is handed at ferrule.json.
    key_id      TEXT NOT NULL,
    key_secret  TEXT NOT NULL,
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE app_files (
    tenant  TEXT NOT NULL,
    app     TEXT NOT NULL,
    path    TEXT NOT NULL,
    body    BLOB NOT NULL,
    PRIMARY KEY (tenant, app, path),
    FOREIGN KEY (tenant, app) REFERENCES apps(tenant, id) ON DELETE CASCADE
) STRICT;

-- Tenants and devices deleted here whose data elsewhere (telemetry, the MQTT
-- broker's memory) is still being removed. A row is written in the deleting
-- transaction and removed once every store is done, so a crash in between
-- resumes the deletion at start, and the id cannot be taken again meanwhile.
-- `device` is '' for a whole tenant. No foreign key: the tenant is gone.
CREATE TABLE pending_deletions (
    tenant  TEXT NOT NULL,
    device  TEXT NOT NULL,
    PRIMARY KEY (tenant, device)
) STRICT;

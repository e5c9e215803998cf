-- Rules (SQL over messages, plus actions), the webhook calls that failed
-- for good (dead letters, replayable), and alarms with their transitions.
-- A tenant's rules, dead letters and alarms go with the tenant; a device's
-- alarms go with the device (ON DELETE CASCADE).

CREATE TABLE rules (
    tenant       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    sql          TEXT NOT NULL,
    -- JSON array of actions.
    actions      TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    -- 1 on creation, +1 on every change (enable/disable included).
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE rule_dead_letters (
    tenant        TEXT NOT NULL,
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    rule          TEXT NOT NULL,
    rule_version  INTEGER NOT NULL,
    -- The action's index in the rule's list.
    action        INTEGER NOT NULL,
    -- The request as it would be sent again (JSON: method, url, headers, body).
    request       TEXT NOT NULL,
    error         TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    -- Set once replayed successfully; kept for the record.
    replayed_at   INTEGER,
    FOREIGN KEY (tenant, rule) REFERENCES rules(tenant, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX rule_dead_letters_by_rule ON rule_dead_letters(tenant, rule, id);

CREATE TABLE alarms (
    tenant           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL for an alarm about no one device.
    device           TEXT,
    type             TEXT NOT NULL,
    -- critical | major | minor | warning | indeterminate
    severity         TEXT NOT NULL,
    -- active | acknowledged | cleared
    state            TEXT NOT NULL,
    -- JSON.
    details          TEXT NOT NULL,
    -- How many times it was raised while open.
    count            INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    -- Who raised it: rule:ID, user:EMAIL, key:ID.
    originator       TEXT NOT NULL,
    acknowledged_by  TEXT,
    acknowledged_at  INTEGER,
    cleared_by       TEXT,
    cleared_at       INTEGER,
    FOREIGN KEY (tenant, device) REFERENCES devices(tenant, id) ON DELETE CASCADE
) STRICT;
-- At most one open (not cleared) alarm per (device, type): raising again
-- updates it.
CREATE UNIQUE INDEX alarms_open ON alarms(tenant, coalesce(device, ''), type)
    WHERE state <> 'cleared';
CREATE INDEX alarms_by_time ON alarms(tenant, last_seen);

-- E-supervision queries: each case as the engine last evaluated it, each case event's reporting
-- lag, and the lease that lets one engine at a time work on a shared store.
-- Portable SQL, like the others.

-- One row per case the engine has evaluated, upserted with its alert changes and cursor.
-- `submitted_at` is when the hub accepted the application; `accepted_at` the department's 受理,
-- from which the promised and statutory dues run on the calendar (NULL before it, or when the
-- item's limit cannot be placed). `state` is the case state (`submitted`, `accepted`, …,
-- `suspended`, `completed`, `refused`); `on_time` is 1 when completed by the promised due, 0
-- when later, NULL without both; `handling_ms` runs from acceptance to completion by event time.
CREATE TABLE cases (
    application_id TEXT PRIMARY KEY,
    system_id TEXT NOT NULL,
    item_code TEXT NOT NULL,
    department TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    accepted_at BIGINT NULL,
    promised_due BIGINT NULL,
    statutory_due BIGINT NULL,
    completed_at BIGINT NULL,
    on_time BIGINT NULL,
    handling_ms BIGINT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cases_system ON cases (system_id, state, promised_due);
CREATE INDEX cases_item ON cases (item_code, state);

-- One row per case event in the feed: arrival minus the event's own time. Keyed by the event's
-- feed entry, so the engine can write it again after a restart without counting it twice.
CREATE TABLE reporting_lags (
    feed_seq BIGINT PRIMARY KEY,
    system_id TEXT NOT NULL,
    item_code TEXT NOT NULL,
    application_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    lag_ms BIGINT NOT NULL
);
CREATE INDEX reporting_lags_system ON reporting_lags (system_id);
CREATE INDEX reporting_lags_item ON reporting_lags (item_code);

-- Who may do a singleton job until when. Taken and renewed with a conditional UPDATE, so with
-- several hubs on one database exactly one holds it; `epoch` grows whenever the holder changes,
-- which tells a returning holder that someone else worked in between.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until BIGINT NOT NULL,
    epoch BIGINT NOT NULL
);
INSERT INTO leases (name, holder, until, epoch) VALUES ('supervision_engine', '', 0, 0);

-- The engine reads the feed once more from the start, so that cases and lags are filled for what
-- it had already handled. It reconciles against the stored alerts, so this raises nothing twice.
UPDATE cursors SET seq = 0 WHERE name = 'supervision_engine';

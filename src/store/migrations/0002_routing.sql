-- Routing and delivery: accepted applications, the outbox of deliveries with every attempt,
-- idempotency keys, and the case events and results systems send back.

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    item_code TEXT NOT NULL,
    item_version BIGINT NOT NULL,
    system_id TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX applications_system ON applications (system_id, accepted_at);

CREATE TABLE idempotency_keys (
    idem_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    application_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The outbox: one row per message to a system; `payload` is the canonical document, mapped
-- at delivery time. A row is claimed by setting `claimed_until` (a lease), so a crashed
-- worker's claims lapse by themselves.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    system_id TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    attempts_base BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (system_id, status, next_attempt_at);
CREATE INDEX deliveries_application ON deliveries (application_id, seq);

CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status_code BIGINT,
    detail TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE case_events (
    system_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    node_name TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (system_id, event_id)
);
CREATE INDEX case_events_application ON case_events (application_id, received_at);

CREATE TABLE results (
    system_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (system_id, license_id)
);

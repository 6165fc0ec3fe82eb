-- Real-time e-supervision: the feed of case events and alerts (what the SSE stream and the
-- AMQP publisher send), the alerts the rules raise, and readers' positions in the feed.
-- Portable SQL, like the others.

-- One row per case event and per alert change. `seq` comes from the `supervision_feed` counter,
-- taken under its row lock, so it follows commit order and a reader after `seq` never misses a
-- row that commits later. `department` is the item's department USCC ('' if unknown); `body`
-- is JSON with personal data masked.
CREATE TABLE supervision_feed (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    system_id TEXT NOT NULL,
    department TEXT NOT NULL,
    item_code TEXT NOT NULL,
    application_id TEXT NOT NULL,
    level TEXT NULL,
    routing_key TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX supervision_feed_kind ON supervision_feed (kind, seq);

INSERT INTO counters (name, value) VALUES ('supervision_feed', 0);

-- One row per alert: raised once, escalated in place, resolved when its condition ends.
-- `application_id` and `item_code` are NULL for a system's own alert (system_silent).
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    system_id TEXT NOT NULL,
    application_id TEXT NULL,
    item_code TEXT NULL,
    level TEXT NOT NULL,
    evidence TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    resolved_at BIGINT NULL
);
CREATE INDEX alerts_system ON alerts (system_id, raised_at);
CREATE INDEX alerts_application ON alerts (application_id);

-- Where each reader of the feed has got to (the supervision engine, the AMQP publisher).
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- Inbound messages the hub refused, where each poller has read its system's feed up to, and the
-- department of each alert.

-- One row per message a connected system sent that the hub could not take (it does not map, is
-- dated in the future, concerns an application the system does not handle, …), whatever way it
-- came (`via`: webhook, poll, queue). `reasons` is a JSON array of the reasons, masked: mapping
-- and schema messages never quote values, and ID and phone numbers are scrubbed. The supervision
-- engine raises `events_refused` from these rows. `seq` comes from the `inbound_refusals`
-- counter, so the engine sees a new refusal by its head moving. `fingerprint` says which message
-- it was (SHA-256, hex, of the body as received, with a webhook's declared media type when that
-- was what was refused): the same message refused again, polled again or redelivered, is the
-- same refusal, so the unique index keeps one row of it. It is NULL when the body was never read
-- (too large, too slow, an unreadable Content-Type); such refusals cannot be told apart, and NULLs
-- never conflict.
CREATE TABLE inbound_refusals (
    seq BIGINT PRIMARY KEY,
    system_id TEXT NOT NULL,
    department TEXT NOT NULL,
    kind TEXT NOT NULL,
    via TEXT NOT NULL,
    at BIGINT NOT NULL,
    reasons TEXT NOT NULL,
    fingerprint TEXT
);
CREATE INDEX inbound_refusals_at ON inbound_refusals (at);
CREATE UNIQUE INDEX inbound_refusals_message ON inbound_refusals (system_id, kind, fingerprint);

INSERT INTO counters (name, value) VALUES ('inbound_refusals', 0);

-- How far each poller has read its system's feed (`kind`: event or result): the highest `seq`
-- whose message was stored or refused for good, and the URL it was read from (a feed at another
-- URL is read from its start). A restarted hub asks from here instead of from 0.
CREATE TABLE poll_cursors (
    system_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (system_id, kind)
);

-- The department (USCC, '' if unknown) an alert is about, so that a system's own alerts
-- (system_silent, events_refused) are found by the department filter like a case's.
ALTER TABLE alerts ADD COLUMN department TEXT NOT NULL DEFAULT '';

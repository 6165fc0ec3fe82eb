-- Inbound messages the hub refused, and the department of each alert.

-- One row per message a connected system sent that the hub could not take (it does not map, is
-- dated in the future, concerns an application the system does not handle, …), whatever way it
-- came (`via`: webhook, poll, queue). `reasons` is a JSON array of the reasons, masked: mapping
-- and schema messages never quote values, and ID and phone numbers are scrubbed. The supervision
-- engine raises `events_refused` from these rows. `seq` comes from the `inbound_refusals`
-- counter, so the engine sees a new refusal by its head moving.
CREATE TABLE inbound_refusals (
    seq BIGINT PRIMARY KEY,
    system_id TEXT NOT NULL,
    department TEXT NOT NULL,
    kind TEXT NOT NULL,
    via TEXT NOT NULL,
    at BIGINT NOT NULL,
    reasons TEXT NOT NULL
);
CREATE INDEX inbound_refusals_at ON inbound_refusals (at);

INSERT INTO counters (name, value) VALUES ('inbound_refusals', 0);

-- The department (USCC, '' if unknown) an alert is about, so that a system's own alerts
-- (system_silent, events_refused) are found by the department filter like a case's.
ALTER TABLE alerts ADD COLUMN department TEXT NOT NULL DEFAULT '';

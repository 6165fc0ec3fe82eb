-- Heartbeats, and finding the applications no system has reported on yet.

-- When each connected system was last heard from other than by a case event (its
-- heartbeat call or AMQP message, or a successful poll of it). The silence rule takes the later of
-- this and the system's latest case event. One row per system, moved forward only.
CREATE TABLE system_heartbeats (
    system_id TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

-- Applications the hub accepted whose system has not reported yet are open cases too (state
-- `submitted`); this partial index finds them without reading every application.
CREATE INDEX applications_awaiting ON applications (system_id) WHERE state IN ('accepted', 'delivered');

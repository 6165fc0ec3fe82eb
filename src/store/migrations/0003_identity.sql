-- Identity and audit: API keys (only a SHA-256 of each secret is kept), the hash-chained audit
-- log, and the applicant's verified identity on each delivery. Portable SQL, like the others.

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role TEXT NOT NULL,
    system_id TEXT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NULL,
    revoked_at BIGINT NULL
);

-- One row per audited action, each chained to the one before by `prev_hash` (see src/audit.rs).
-- `seq` comes from the `audit` counter, taken under its row lock, so it follows commit order.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_at ON audit_log (at);

INSERT INTO counters (name, value) VALUES ('audit', 0);

-- The applicant's verified identity, already masked, as JSON text: delivery workers sign an
-- identity assertion from it for every attempt. NULL when the application came without one.
ALTER TABLE deliveries ADD COLUMN identity TEXT;

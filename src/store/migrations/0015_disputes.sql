-- Disputes (异议, 第二十六条): a holder disputes a result, or an access to one, with a reason; the
-- issuing system takes it up and resolves it (corrected, revoked, rejected with a reason) before
-- `due_at` (epoch ms, on the working-day calendar), or supervision raises dispute_overdue.
-- `holder_key` is the keyed hash that indexes holders; `reason` is the holder's own text.
CREATE TABLE disputes (
    id TEXT PRIMARY KEY,
    holder_key TEXT NOT NULL,
    system_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    access_id TEXT,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    answer TEXT,
    opened_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX disputes_holder ON disputes (holder_key, opened_at);
CREATE INDEX disputes_system ON disputes (system_id, state, opened_at);
CREATE INDEX disputes_open ON disputes (state, due_at);

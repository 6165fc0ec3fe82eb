-- Onboarding requests (第五条): a department's bundle for one system (`bundle`: JSON, each file's
-- path and content), the checks at submission and the conformance probes' report (`checks`,
-- `probes`: JSON, evidence masked), and the reviewer's decision with a reason per failing point
-- (`reasons`: JSON). Requests are never deleted: they are the history of the system's onboarding.
CREATE TABLE onboarding_requests (
    id TEXT PRIMARY KEY,
    system_id TEXT NOT NULL,
    department_uscc TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    bundle TEXT NOT NULL,
    state TEXT NOT NULL,
    checks TEXT NOT NULL,
    probes TEXT,
    probed_at BIGINT,
    decided_by TEXT,
    decided_at BIGINT,
    decision TEXT,
    reasons TEXT,
    note TEXT,
    generation BIGINT
);
CREATE INDEX onboarding_requests_system ON onboarding_requests (system_id, submitted_at);
CREATE INDEX onboarding_requests_state ON onboarding_requests (state, submitted_at);

-- Console sessions: a credential (API key or staff token) exchanged at sign-in for a session
-- cookie. Only the SHA-256 of the cookie's secret is kept; `roles` space-separated; `key_id` the
-- API key signed in with (its revocation ends the session), NULL for a staff token; `csrf` the
-- token every form of the session carries.
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    roles TEXT NOT NULL,
    system_id TEXT NULL,
    department TEXT NULL,
    key_id TEXT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Sealed results: every version stored from now on is sealed once, when it is stored, as a
-- Verifiable Credential (`credential`, JSON text) whose status is bit `status_index` of the
-- hub's status lists (revocation: revoked or superseded; suspension: awaiting its completion).
-- Versions stored before this have neither.
ALTER TABLE results ADD COLUMN credential TEXT;
ALTER TABLE results ADD COLUMN status_index BIGINT;
CREATE UNIQUE INDEX results_status_index ON results (status_index);
CREATE INDEX results_status ON results (state, status_index);
-- The next status index to give out, taken one at a time (a gap left by a result that was then
-- not stored is a bit never set, which is harmless).
CREATE TABLE seal_counter (id INTEGER PRIMARY KEY, next_index BIGINT NOT NULL);
INSERT INTO seal_counter (id, next_index) VALUES (1, 0);

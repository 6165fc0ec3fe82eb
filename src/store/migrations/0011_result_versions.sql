-- Results as licenses with versions: every version a system sends is kept (its own row, keyed as
-- before by system and license id), with the license it is a version of (`license_key`: the
-- e-license id without its version and check character), its version number, and where it
-- stands: `valid`, `superseded` (by `superseded_by`, a newer version's license id) or `revoked`
-- (with `state_reason`), since `state_at` (epoch ms; NULL while valid).
-- Rows stored before this are each a license of their own.
ALTER TABLE results ADD COLUMN license_key TEXT NOT NULL DEFAULT '';
ALTER TABLE results ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN state TEXT NOT NULL DEFAULT 'valid';
ALTER TABLE results ADD COLUMN state_at BIGINT;
ALTER TABLE results ADD COLUMN state_reason TEXT;
ALTER TABLE results ADD COLUMN superseded_by TEXT;
UPDATE results SET license_key = license_id;
CREATE INDEX results_license ON results (system_id, license_key, version);
CREATE INDEX results_license_id ON results (license_id);
CREATE INDEX results_application ON results (application_id, received_at);

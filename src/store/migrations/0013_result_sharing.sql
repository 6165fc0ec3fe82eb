-- Result sharing: each result's holder, indexed by a keyed hash of their ID type and number
-- (never the ID in clear), and its license type, so that a holder's results of a type are found
-- without reading every body; NULL until the hub indexes it (results stored before this are
-- indexed at start).
ALTER TABLE results ADD COLUMN holder_key TEXT;
ALTER TABLE results ADD COLUMN license_type TEXT;
CREATE INDEX results_holder ON results (holder_key, license_type);

-- Every access to a holder's results by another department's system (or by the hub on an
-- application's behalf), written in the transaction that answers it: who (department USCC and
-- system), when (epoch ms), which result, for what purpose, and any detail (the application a
-- shared material stands in for).
CREATE TABLE result_accesses (
    id TEXT PRIMARY KEY,
    holder_key TEXT NOT NULL,
    accessed_at BIGINT NOT NULL,
    department TEXT NOT NULL,
    system_id TEXT NOT NULL,
    license_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX result_accesses_holder ON result_accesses (holder_key, accessed_at, id);

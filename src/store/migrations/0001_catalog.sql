-- The item catalog: every version of every item, the current version of each, and the ordered
-- change feed. Portable SQL: the same file migrates SQLite and PostgreSQL.

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('catalog_change', 0);

CREATE TABLE catalog_items (
    code TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    item_type TEXT NOT NULL,
    department_uscc TEXT NOT NULL,
    department_name TEXT NOT NULL,
    status TEXT NOT NULL,
    content TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (code, version)
);

CREATE TABLE catalog_current (
    code TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE catalog_changes (
    seq BIGINT PRIMARY KEY,
    code TEXT NOT NULL,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    changed_fields TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE INDEX catalog_items_department ON catalog_items (department_uscc);
CREATE INDEX catalog_items_type ON catalog_items (item_type);

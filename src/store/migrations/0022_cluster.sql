-- Several hubs on one store. Each running hub keeps its row in `hub_members`, renewed every
-- second, so every hub knows how many share the lanes' rate limits and concurrency; a row
-- not renewed for a few seconds is a hub gone. `cluster` holds the cluster's id, which the
-- supervision feed's messages carry. `activations` records each configuration activated, so
-- every hub applies it.
CREATE TABLE hub_members (
    id TEXT PRIMARY KEY,
    listen TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE TABLE cluster (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE activations (
    seq BIGINT PRIMARY KEY,
    digest TEXT NOT NULL,
    hub TEXT NOT NULL,
    at BIGINT NOT NULL
);
-- One publisher to the broker at a time.
INSERT INTO leases (name, holder, until, epoch) VALUES ('supervision_publisher', '', 0, 0);

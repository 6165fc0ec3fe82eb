-- The four integrations (第十一条), system by system. `probe_runs`: what each conformance probe
-- found each time it ran on a system (`origin`: `onboarding`, recorded when the request went live,
-- or `schedule`, the ledger's own runs), with its report (JSON, evidence masked).
-- `integration_statuses`: each system's current status on each integration, since when, and the
-- evidence it was judged on (JSON, masked).
CREATE TABLE probe_runs (
    run_id TEXT NOT NULL,
    system_id TEXT NOT NULL,
    probe TEXT NOT NULL,
    at BIGINT NOT NULL,
    origin TEXT NOT NULL,
    outcome TEXT NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (run_id, probe)
);
CREATE INDEX probe_runs_system ON probe_runs (system_id, probe, at);

CREATE TABLE integration_statuses (
    system_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    status TEXT NOT NULL,
    since BIGINT NOT NULL,
    evaluated_at BIGINT NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (system_id, integration)
);

-- Finished deliveries by system and time, for the shares the ledger judges on.
CREATE INDEX deliveries_finished ON deliveries (system_id, finished_at);
CREATE INDEX cases_completed ON cases (system_id, completed_at);
CREATE INDEX reporting_lags_received ON reporting_lags (system_id, received_at);

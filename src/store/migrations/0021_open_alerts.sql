-- Open alerts by level, counted at every metrics scrape: an index of the open ones only, so the
-- count does not read the alerts resolved over the years.
CREATE INDEX alerts_open ON alerts (level) WHERE resolved_at IS NULL;

-- The W3C trace context (`traceparent`) each application was accepted under: its deliveries'
-- attempts, the case events that come back and the alerts raised on it continue that trace,
-- in any hub and at any later time. NULL for applications accepted before traces existed.
ALTER TABLE applications ADD COLUMN trace_context TEXT;
ALTER TABLE deliveries ADD COLUMN trace_context TEXT;

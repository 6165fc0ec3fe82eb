-- The message of a delivery in its system's format, written once when its application was
-- accepted (so what was checked is what is sent), with the places each attempt's identity
-- assertion goes (byte offsets, comma-separated). NULL for deliveries mapped at each attempt:
-- replays, and those accepted before messages were kept.
ALTER TABLE deliveries ADD COLUMN message BYTEA;
ALTER TABLE deliveries ADD COLUMN assertion_at TEXT;

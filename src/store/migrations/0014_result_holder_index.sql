-- A holder's results are found through (holder key, state, license type): every query for them
-- names the holder and the states they may be in, and a department's query the license type
-- too. With the state second, a query for one state (a department's: valid results only) seeks
-- this index on SQLite as well, which keeps no statistics and, between two indexes that each
-- matched one column, took `results_status` (state, status index) and read every valid result
-- of every holder: about a second a query with a million results.
DROP INDEX results_holder;
CREATE INDEX results_holder ON results (holder_key, state, license_type);

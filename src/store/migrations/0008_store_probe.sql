-- Readiness: `/readyz` writes a row here and removes it in the same transaction, to learn that
-- the store can commit. No key: the row is never seen outside its transaction.
CREATE TABLE store_probe (
    id TEXT NOT NULL,
    filler TEXT NOT NULL
);

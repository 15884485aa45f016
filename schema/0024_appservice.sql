-- 0024: application service delivery (spec "Application Service API": pushing events).
--
-- One row per registration ID: events with stream_ordering <= last_pos were delivered (or were
-- of no interest). `next_txn` numbers transactions. At most one transaction is in flight per
-- appservice: it is recorded here before it is sent, so after a failure or a restart the SAME
-- txn ID and body are re-sent, and last_pos only moves past `upto_pos` once it was answered 200.
CREATE TABLE appservice_stream (
    as_id              TEXT    PRIMARY KEY,
    last_pos           INTEGER NOT NULL,
    next_txn           INTEGER NOT NULL DEFAULT 1
) STRICT, WITHOUT ROWID;

CREATE TABLE appservice_txns (
    as_id              TEXT    PRIMARY KEY,
    txn_id             INTEGER NOT NULL,
    upto_pos           INTEGER NOT NULL,     -- last_pos once this transaction is acknowledged
    body               TEXT    NOT NULL      -- JSON: the PUT body, exactly as first sent
) STRICT, WITHOUT ROWID;

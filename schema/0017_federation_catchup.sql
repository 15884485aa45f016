-- 0017: how far each destination server has acknowledged our events, so that after a restart
-- (or a long outage) the sender catches it up from there instead of losing what was queued.
CREATE TABLE federation_destinations (
    destination  TEXT    PRIMARY KEY,
    last_acked   INTEGER NOT NULL          -- highest stream_ordering it accepted a txn for
) STRICT, WITHOUT ROWID;

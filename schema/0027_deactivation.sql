-- 0027: deactivated users leave their rooms in the background (one may be in thousands): the
-- queue survives restarts and the offline `trioserver deactivate` fills it too. `erased`: the
-- user asked for erasure (POST /account/deactivate with "erase": true).
CREATE TABLE deactivation_queue (
    user_id    TEXT    PRIMARY KEY,
    queued_ts  INTEGER NOT NULL
) STRICT;
ALTER TABLE users ADD COLUMN erased INTEGER NOT NULL DEFAULT 0 CHECK (erased IN (0, 1));

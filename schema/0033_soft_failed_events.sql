-- 0033: soft-failed events (they pass the auth rules against the state before them but not
-- against the room's current state) are kept out of the timeline and the current state, as
-- the Server-Server spec says, but stored: their PDU as an outlier, and here the state groups
-- before and after them, so a later event that builds on one is checked and persisted like
-- any other instead of opening a gap.
CREATE TABLE soft_failed_events (
    event_id      TEXT    PRIMARY KEY,
    room_id       TEXT    NOT NULL,
    state_before  INTEGER NOT NULL,
    state_after   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

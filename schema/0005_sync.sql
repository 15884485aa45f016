-- 0005: stored sync filters.
CREATE TABLE filters (
    id                 INTEGER PRIMARY KEY,
    user_id            TEXT    NOT NULL,
    definition         TEXT    NOT NULL
) STRICT;
CREATE INDEX filters_user ON filters (user_id);

-- A user's membership events across rooms, in stream order (what changed for them since X).
CREATE INDEX events_member_target ON events (state_key, stream_ordering)
    WHERE type = 'm.room.member';

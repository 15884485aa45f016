-- 0015: events we hold only for their role in auth and state (the state and auth chain a
-- server sent when we joined its room): they have no place in the timeline, so they are kept
-- apart from `events` and never show up in /messages or /sync.
CREATE TABLE outlier_events (
    event_id  TEXT PRIMARY KEY,
    room_id   TEXT NOT NULL,
    pdu       BLOB NOT NULL           -- msgpack of the signed PDU
) STRICT, WITHOUT ROWID;

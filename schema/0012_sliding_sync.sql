-- 0012: sliding sync needs, per room, the newest event of a few "bump" types (bump_stamp);
-- with this index that is one seek per (room, type) instead of a scan of the room's events.
CREATE INDEX events_room_type_stream ON events (room_id, type, stream_ordering);

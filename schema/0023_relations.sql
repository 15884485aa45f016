-- 0023_relations: event relationships (spec "Forming relationships between events"), one row
-- per event that has `content.m.relates_to` with both `rel_type` and `event_id`. Filled in the
-- same transaction as the event itself (storage/repositories/events.py insert_event and
-- insert_backfilled_event), so local sends, federation and backfill are all covered.
-- Events stored before this migration are not indexed: their PDUs are msgpack, which SQL
-- cannot read, so an INSERT ... SELECT backfill is impossible here (see relations.py).
CREATE TABLE event_relations (
    event_id         TEXT    PRIMARY KEY,
    room_id          TEXT    NOT NULL,
    relates_to       TEXT    NOT NULL,   -- the parent event
    rel_type         TEXT    NOT NULL,
    sender           TEXT    NOT NULL,
    type             TEXT    NOT NULL,
    aggregation_key  TEXT,               -- m.annotation `key`
    origin_server_ts INTEGER NOT NULL,
    stream_ordering  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, stream_ordering);
-- /threads: a room's thread replies by position.
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, stream_ordering);

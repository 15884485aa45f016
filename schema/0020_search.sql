-- 0020_search: full-text search over message bodies, room names and topics (POST /search).
--
-- event_search holds the keys of each indexed event; event_search_fts is a contentless FTS5
-- index whose rowid is the event's stream_ordering. The text itself already lives in
-- events.pdu, so storing it a second time would only double the disk cost; contentless_delete
-- keeps DELETE working (redactions remove an event from the index).
CREATE TABLE event_search (
    stream_ordering    INTEGER PRIMARY KEY,
    event_id           TEXT    NOT NULL UNIQUE,
    room_id            TEXT    NOT NULL,
    sender             TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    key                TEXT    NOT NULL,  -- content.body, content.name or content.topic
    origin_server_ts   INTEGER NOT NULL
) STRICT;
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

CREATE VIRTUAL TABLE event_search_fts USING fts5 (
    text, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);

-- PDUs are msgpack, so SQL cannot index the events already stored: a start-up task indexes
-- those at or below `upto`, newest first, moving `upto` down; the row goes when it is done.
CREATE TABLE search_backfill (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    upto  INTEGER NOT NULL
) STRICT;
INSERT INTO search_backfill (id, upto)
    SELECT 1, max(stream_ordering) FROM events HAVING count(*) > 0;

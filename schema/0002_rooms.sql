-- 0002: rooms, the event graph and room state.
--
-- State is stored as state groups: a group is either a full snapshot (prev_group NULL) or a
-- delta on top of prev_group. A new group becomes a snapshot when its delta chain would grow
-- longer than the state it describes (with a floor), so storage stays linear in the number of
-- state changes while reading any group costs O(state size) rows in one query.

CREATE TABLE rooms (
    room_id            TEXT    PRIMARY KEY,
    room_version       TEXT    NOT NULL,
    creator            TEXT    NOT NULL,
    created_ts         INTEGER NOT NULL,
    published          INTEGER NOT NULL DEFAULT 0 CHECK (published IN (0, 1))
) STRICT;

CREATE TABLE state_groups (
    id                 INTEGER PRIMARY KEY,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    prev_group         INTEGER REFERENCES state_groups (id),
    chain_length       INTEGER NOT NULL,          -- deltas between this group and its snapshot
    state_size         INTEGER NOT NULL           -- entries in the full state
) STRICT;

CREATE TABLE state_group_entries (
    state_group        INTEGER NOT NULL REFERENCES state_groups (id),
    type               TEXT    NOT NULL,
    state_key          TEXT    NOT NULL,
    event_id           TEXT    NOT NULL,
    PRIMARY KEY (state_group, type, state_key)
) STRICT, WITHOUT ROWID;

-- Every accepted event. stream_ordering is the global order clients see (assigned at commit by
-- the single writer); AUTOINCREMENT guarantees it never goes backwards or is reused.
CREATE TABLE events (
    stream_ordering    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT    NOT NULL UNIQUE,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    type               TEXT    NOT NULL,
    state_key          TEXT,
    sender             TEXT    NOT NULL,
    depth              INTEGER NOT NULL,
    origin_server_ts   INTEGER NOT NULL,
    state_before       INTEGER NOT NULL REFERENCES state_groups (id),
    state_after        INTEGER NOT NULL REFERENCES state_groups (id),
    pdu                BLOB    NOT NULL           -- msgpack of the signed PDU
) STRICT;
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_room_state ON events (room_id, type, state_key) WHERE state_key IS NOT NULL;

-- The room's current state, with membership denormalised for "which rooms is X in" queries.
CREATE TABLE current_state (
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    type               TEXT    NOT NULL,
    state_key          TEXT    NOT NULL,
    event_id           TEXT    NOT NULL,
    membership         TEXT,
    PRIMARY KEY (room_id, type, state_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX current_state_members ON current_state (state_key, membership)
    WHERE type = 'm.room.member';

CREATE TABLE forward_extremities (
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    event_id           TEXT    NOT NULL,
    PRIMARY KEY (room_id, event_id)
) STRICT, WITHOUT ROWID;

-- Accepted redactions (applied when events are served).
CREATE TABLE redactions (
    redacts            TEXT    NOT NULL,
    redaction_id       TEXT    NOT NULL,
    PRIMARY KEY (redacts, redaction_id)
) STRICT, WITHOUT ROWID;

-- Transaction IDs: a retry (same device, same txn id, same request path) returns the same
-- event. `scope` is the path the txn id was used on (e.g. "send !room m.room.message").
CREATE TABLE event_txn_ids (
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    scope              TEXT    NOT NULL,
    txn_id             TEXT    NOT NULL,
    event_id           TEXT    NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE room_aliases (
    alias              TEXT    PRIMARY KEY,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    creator            TEXT    NOT NULL
) STRICT;
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Rooms a user has forgotten (POST /forget) after leaving.
CREATE TABLE forgotten_rooms (
    user_id            TEXT    NOT NULL,
    room_id            TEXT    NOT NULL,
    PRIMARY KEY (user_id, room_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE event_reports (
    id                 INTEGER PRIMARY KEY,
    room_id            TEXT    NOT NULL,
    event_id           TEXT,
    reporter           TEXT    NOT NULL,
    reason             TEXT,
    score              INTEGER,
    received_ts        INTEGER NOT NULL
) STRICT;

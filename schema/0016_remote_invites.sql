-- 0016: invites from other servers to rooms this server is not in (yet). A row is the invite
-- the user sees in /sync (with the stripped state the inviting server sent) until they join
-- or reject it; stream_id orders them for incremental syncs.
CREATE TABLE remote_invites (
    stream_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       TEXT    NOT NULL,
    room_id       TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    room_version  TEXT    NOT NULL,
    inviter       TEXT    NOT NULL,
    invite_state  TEXT    NOT NULL,       -- JSON array of stripped state events
    pdu           BLOB    NOT NULL,       -- msgpack of the invite, signed by both servers
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    UNIQUE (user_id, room_id)
) STRICT;
CREATE INDEX remote_invites_user ON remote_invites (user_id, stream_id);

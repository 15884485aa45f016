-- 0007: server-side key backups (spec "Server-side key backups").
--
-- Versions are numbered per user from 1 and never reused: a deleted version keeps its row as a
-- tombstone (deleted = 1, no keys), so deleting it again succeeds and the next version is higher.
-- `etag` counts changes to the version's keys; `key_count` is kept in step with its key rows.
CREATE TABLE key_backup_versions (
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    version            INTEGER NOT NULL CHECK (version > 0),
    algorithm          TEXT    NOT NULL,
    auth_data          TEXT    NOT NULL,            -- JSON object
    etag               INTEGER NOT NULL DEFAULT 0,
    key_count          INTEGER NOT NULL DEFAULT 0,
    deleted            INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    PRIMARY KEY (user_id, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE key_backup_keys (
    user_id              TEXT    NOT NULL,
    version              INTEGER NOT NULL,
    room_id              TEXT    NOT NULL,
    session_id           TEXT    NOT NULL,
    first_message_index  INTEGER NOT NULL,
    forwarded_count      INTEGER NOT NULL,
    is_verified          INTEGER NOT NULL CHECK (is_verified IN (0, 1)),
    session_data         TEXT    NOT NULL,          -- JSON object, opaque to the server
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions (user_id, version)
        ON DELETE CASCADE
) STRICT;  -- a rowid table: session_data (~0.5 KiB) is too big for WITHOUT ROWID to pay off

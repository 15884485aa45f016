-- 0003: per-user streams for /sync: account data (incl. room tags), presence, to-device.
--
-- Each stream's position is an AUTOINCREMENT stream_id: assigned in commit order by the single
-- writer and never reused, so a sync token's position stays meaningful after rows are replaced
-- or deleted (the stream's current position is its sqlite_sequence entry, not max(stream_id)).
-- Typing is not here: it is in memory only.

-- Global (room_id '') and per-room account data. A write replaces the row of its
-- (user, room, type) with a new one, so each key has exactly one row, carrying the position of
-- its latest change. content is compact JSON.
CREATE TABLE account_data (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    room_id            TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    content            TEXT    NOT NULL,
    UNIQUE (user_id, room_id, type)
) STRICT;
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- The newest presence of each user; replaced (new stream_id) whenever what others see changes.
-- last_active_ts and last_sync_ts are also refreshed in place, without a new position.
CREATE TABLE presence (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT    NOT NULL UNIQUE REFERENCES users (user_id) ON DELETE CASCADE,
    state              TEXT    NOT NULL CHECK (state IN ('online', 'unavailable', 'offline')),
    status_msg         TEXT,
    last_active_ts     INTEGER,                   -- wall-clock ms; NULL = never active
    last_sync_ts       INTEGER NOT NULL,          -- last /sync or presence PUT, wall-clock ms
    currently_active   INTEGER NOT NULL CHECK (currently_active IN (0, 1))
) STRICT;
CREATE INDEX presence_not_offline ON presence (user_id) WHERE state != 'offline';

-- Pending send-to-device messages, one row per recipient device, deleted once the device's
-- next /sync proves it received them (or with the device itself).
CREATE TABLE to_device_inbox (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    sender             TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    content            TEXT    NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX to_device_inbox_device ON to_device_inbox (user_id, device_id, stream_id);

-- sendToDevice transaction IDs already handled, per sending device and event type (the txn id
-- is scoped to the request path, which includes the type). Pruned after a day.
CREATE TABLE to_device_txns (
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    txn_id             TEXT    NOT NULL,
    created_ts         INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, type, txn_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX to_device_txns_age ON to_device_txns (created_ts);

-- 0004: receipts, push rules, push actions (notifications) and unread-count changes.
--
-- Streams for /sync: `receipts.stream_id` orders receipts ("rc"), `unread_changes.stream_id`
-- orders changes of a user's unread counts in a room ("un"). Both tables keep only the newest
-- row per key; a change replaces the row (INSERT OR REPLACE), which gives it a new, higher
-- stream_id (AUTOINCREMENT: never reused, never backwards). A sync window (since, upto] then
-- sees each key's newest change once, and the tables stay as small as their keys.

-- The newest receipt per (room, user, type, thread).
CREATE TABLE receipts (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    user_id            TEXT    NOT NULL,
    receipt_type       TEXT    NOT NULL,          -- m.read, m.read.private
    thread_id          TEXT    NOT NULL,          -- '' unthreaded, 'main', or a thread root
    event_id           TEXT    NOT NULL REFERENCES events (event_id),
    event_stream_ordering INTEGER NOT NULL,       -- the event's position: read "up to" here
    ts                 INTEGER NOT NULL,
    UNIQUE (room_id, user_id, receipt_type, thread_id)
) STRICT;

-- The newest change of a user's unread counts in a room (a receipt, a notification, a
-- redaction of a notified event, a join).
CREATE TABLE unread_changes (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT    NOT NULL,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    UNIQUE (user_id, room_id)
) STRICT;
CREATE INDEX unread_changes_user ON unread_changes (user_id, stream_id);

-- User-defined push rules. `position` orders the rules of one kind (0 = most important).
CREATE TABLE push_rules (
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL
                       CHECK (kind IN ('override', 'content', 'room', 'sender', 'underride')),
    rule_id            TEXT    NOT NULL,
    position           INTEGER NOT NULL,
    enabled            INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    conditions         TEXT,                      -- JSON array (override, underride)
    pattern            TEXT,                      -- content rules
    actions            TEXT    NOT NULL,          -- JSON array
    PRIMARY KEY (user_id, kind, rule_id)
) STRICT, WITHOUT ROWID;

-- A user's changes to server-default rules; NULL keeps the default.
CREATE TABLE push_rule_defaults (
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL,
    rule_id            TEXT    NOT NULL,
    enabled            INTEGER CHECK (enabled IN (0, 1)),
    actions            TEXT,                      -- JSON array
    PRIMARY KEY (user_id, kind, rule_id)
) STRICT, WITHOUT ROWID;

-- Events that notified a user: the actions of the push rule that matched (only kept when they
-- include "notify"). Unread counts are the rows after the user's read receipts.
CREATE TABLE push_actions (
    user_id            TEXT    NOT NULL,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    stream_ordering    INTEGER NOT NULL REFERENCES events (stream_ordering),
    thread_id          TEXT    NOT NULL,          -- 'main' or the thread root
    highlight          INTEGER NOT NULL CHECK (highlight IN (0, 1)),
    actions            TEXT    NOT NULL,          -- JSON array
    ts                 INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
) STRICT, WITHOUT ROWID;
CREATE INDEX push_actions_user ON push_actions (user_id, stream_ordering);
CREATE INDEX push_actions_event ON push_actions (stream_ordering);

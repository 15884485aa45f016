-- 0019: to-device messages across servers, exactly once (m.direct_to_device).
-- Out: each EDU for another server waits here, in order, until that server acknowledged the
-- transaction that carried it; after a restart the rest is sent again.
CREATE TABLE federation_to_device_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    destination  TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    content      TEXT    NOT NULL,          -- the EDU content, compact JSON
    UNIQUE (destination, message_id)
) STRICT;

-- In: the message_ids seen from each origin (kept 7 days), so a transaction retried after our
-- restart is not delivered twice.
CREATE TABLE federation_to_device_seen (
    origin       TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    received_ts  INTEGER NOT NULL,
    PRIMARY KEY (origin, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX federation_to_device_seen_ts ON federation_to_device_seen (received_ts);

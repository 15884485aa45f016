-- 0030: devices deleted by another process (the offline `trioserver reset-password` and
-- `deactivate` commands) still have to be announced to other servers; the command records them
-- here and the server sends the m.device_list_update EDUs (deleted: true), woken by the admin
-- epoch or at its next start, then deletes the rows. stream_id: the device-list change the
-- devices_deleted_changes trigger recorded for the deletion.
CREATE TABLE device_deletions_outbox (
    stream_id  INTEGER PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    device_id  TEXT    NOT NULL
) STRICT;

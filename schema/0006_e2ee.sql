-- 0006: end-to-end encryption keys and device-list tracking.

CREATE TABLE device_keys (
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    keys_json          TEXT    NOT NULL,          -- the signed DeviceKeys object as uploaded
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- One-time keys are handed out oldest upload first and deleted when claimed.
CREATE TABLE one_time_keys (
    seq                INTEGER PRIMARY KEY,       -- upload order
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    algorithm          TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,          -- "<algorithm>:<id>"
    key_json           TEXT    NOT NULL,
    UNIQUE (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, seq);

CREATE TABLE fallback_keys (
    user_id            TEXT    NOT NULL,
    device_id          TEXT    NOT NULL,
    algorithm          TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    key_json           TEXT    NOT NULL,
    used               INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    PRIMARY KEY (user_id, device_id, algorithm),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

CREATE TABLE cross_signing_keys (
    user_id            TEXT    NOT NULL,
    key_type           TEXT    NOT NULL CHECK (key_type IN ('master', 'self_signing',
                                                           'user_signing')),
    key_json           TEXT    NOT NULL,
    PRIMARY KEY (user_id, key_type)
) STRICT, WITHOUT ROWID;

-- A user's devices or keys changed at stream_id (what /sync device_lists.changed reports).
CREATE TABLE device_list_changes (
    stream_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT    NOT NULL
) STRICT;
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Deleting a device (logout, delete_devices, deactivation) is a device-list change too; a
-- trigger records it in the same transaction, whichever code path deleted it.
CREATE TRIGGER devices_deleted_changes AFTER DELETE ON devices
BEGIN
    INSERT INTO device_list_changes (user_id) VALUES (OLD.user_id);
END;

-- 0009: dehydrated devices (MSC3814).
--
-- A user has at most one dehydrated device. It is also an ordinary row in `devices` (without
-- access tokens), so to-device messages and /keys/query reach it; deleting that row (PUT of a
-- replacement, DELETE /dehydrated_device, or DELETE /devices) removes this row with it.
CREATE TABLE dehydrated_devices (
    user_id      TEXT NOT NULL PRIMARY KEY,
    device_id    TEXT NOT NULL,
    device_data  TEXT NOT NULL,                     -- JSON object, opaque to the server
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;

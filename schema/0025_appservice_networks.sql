-- 0025: per-network room directories of application services (spec "Application Service API":
-- PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}).
--
-- A row means the appservice published the room on that network's list. This is separate from
-- rooms.published (the server's own list): /publicRooms shows network rooms only when asked for
-- that network (third_party_instance_id = "as_id|network_id") or for all networks.
CREATE TABLE appservice_room_list (
    as_id              TEXT    NOT NULL,
    network_id         TEXT    NOT NULL,
    room_id            TEXT    NOT NULL REFERENCES rooms (room_id),
    PRIMARY KEY (as_id, network_id, room_id)
) STRICT, WITHOUT ROWID;

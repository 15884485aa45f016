-- 0028: where an invite from (or knock on) another server's room sorts in a sliding sync room
-- list: the room-event position when it arrived or ended (remote_invites.stream_id is a
-- different stream). 0 for rows from before.
ALTER TABLE remote_invites ADD COLUMN list_pos INTEGER NOT NULL DEFAULT 0;

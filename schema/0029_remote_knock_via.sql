-- 0029: the server a knock on another server's room went through, so retracting it (a leave
-- through make_leave / send_leave) and a later join go to that server. NULL for invites (the
-- inviter's server is used) and for knocks from before.
ALTER TABLE remote_invites ADD COLUMN via TEXT;

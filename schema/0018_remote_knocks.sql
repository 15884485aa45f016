-- 0018: knocks on rooms on other servers are kept beside invites to such rooms: the row's
-- membership says which ("invite" or "knock"); /sync shows them in rooms.invite / rooms.knock.
ALTER TABLE remote_invites ADD COLUMN membership TEXT NOT NULL DEFAULT 'invite'
    CHECK (membership IN ('invite', 'knock'));

-- 0022_accounts_admin: account locking and suspension (spec v1.18 server administration).
-- A locked account's every authenticated request answers 401 M_USER_LOCKED (soft logout);
-- a suspended account can read and leave but not send, join, invite or change its profile.
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;

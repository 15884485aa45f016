-- 0021: pushers (spec "Push Notifications": POST /pushers/set) per user.
--
-- One row per (user, app_id, pushkey). `data` is the pusher's JSON object as the client set it
-- (including `url` for http pushers); the gateway gets it without `url`.
CREATE TABLE pushers (
    user_id             TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    app_id              TEXT    NOT NULL,
    pushkey             TEXT    NOT NULL,
    kind                TEXT    NOT NULL CHECK (kind IN ('http', 'email')),
    app_display_name    TEXT    NOT NULL,
    device_display_name TEXT    NOT NULL,
    profile_tag         TEXT,
    lang                TEXT    NOT NULL,
    data                TEXT    NOT NULL,          -- JSON object
    pushkey_ts          INTEGER NOT NULL,          -- ms: when the pushkey was last set
    PRIMARY KEY (user_id, app_id, pushkey)
) STRICT, WITHOUT ROWID;
CREATE INDEX pushers_key ON pushers (app_id, pushkey);

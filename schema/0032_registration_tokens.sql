-- 0032: registration tokens managed through the admin API (as Synapse's
-- /_synapse/admin/v1/registration_tokens), beside the config's unlimited ones. A token is
-- valid while not expired (expiry_time, ms; NULL: never) and, with uses_allowed set, while
-- pending + completed < uses_allowed. `completed` moves in the transaction that creates the
-- account, under that condition, so concurrent registrations never exceed uses_allowed;
-- `pending` stays for Synapse's shape (no registration is held half-done here).
CREATE TABLE registration_tokens (
    token         TEXT    PRIMARY KEY,
    uses_allowed  INTEGER CHECK (uses_allowed IS NULL OR uses_allowed >= 0),
    pending       INTEGER NOT NULL DEFAULT 0,
    completed     INTEGER NOT NULL DEFAULT 0,
    expiry_time   INTEGER
) STRICT;

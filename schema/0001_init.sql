-- 0001: accounts, devices, tokens and profiles.
-- Tokens are stored only as SHA-256 hashes; the plaintext is shown to the client once.

CREATE TABLE users (
    user_id        TEXT    PRIMARY KEY,
    password_hash  TEXT,                         -- Argon2id string, NULL = cannot log in by password
    is_admin       INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    is_guest       INTEGER NOT NULL DEFAULT 0 CHECK (is_guest IN (0, 1)),
    deactivated    INTEGER NOT NULL DEFAULT 0 CHECK (deactivated IN (0, 1)),
    created_ts     INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    user_id        TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id      TEXT    NOT NULL,
    display_name   TEXT,
    last_seen_ip   TEXT,
    last_seen_ts   INTEGER,
    user_agent     TEXT,
    created_ts     INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) STRICT, WITHOUT ROWID;

-- A refresh token may be replaced by a newer one; the old one stays valid until the newer
-- access or refresh token is first used (spec: POST /refresh).
CREATE TABLE refresh_tokens (
    id             INTEGER PRIMARY KEY,
    token_hash     BLOB    NOT NULL UNIQUE,
    user_id        TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    prev_id        INTEGER REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    created_ts     INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_prev ON refresh_tokens (prev_id);

CREATE TABLE access_tokens (
    token_hash       BLOB    PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    device_id        TEXT    NOT NULL,
    refresh_token_id INTEGER REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    expires_ts       INTEGER,                   -- NULL = does not expire
    created_ts       INTEGER NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_id);

-- One row per profile field; value is the field's JSON encoding (any JSON type for custom keys).
CREATE TABLE profile_fields (
    user_id        TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    field          TEXT    NOT NULL,
    value_json     TEXT    NOT NULL,
    PRIMARY KEY (user_id, field)
) STRICT, WITHOUT ROWID;

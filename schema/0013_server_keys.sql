-- 0013: federation signing keys.
--
-- server_keys: other servers' ed25519 verify keys as fetched (from the server itself or through
-- a notary). Rows are kept after they expire: old events' signatures are still checked with
-- them. valid_until_ts is until when a signature by the key counts: for a current key the
-- lesser of the response's valid_until_ts and 7 days after it was fetched, for a key the server
-- lists in old_verify_keys its expired_ts (then also in expired_ts).
CREATE TABLE server_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    verify_key      BLOB NOT NULL,
    valid_until_ts  INTEGER NOT NULL,
    expired_ts      INTEGER,
    fetched_ts      INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
) STRICT, WITHOUT ROWID;

-- The newest validly self-signed /_matrix/key/v2/server response of each server, as received
-- (signatures intact): what the notary endpoints serve again, co-signed by this server.
CREATE TABLE server_key_responses (
    server_name     TEXT PRIMARY KEY,
    response        TEXT NOT NULL,
    valid_until_ts  INTEGER NOT NULL,
    fetched_ts      INTEGER NOT NULL
) STRICT;

-- This server's own retired signing keys (public halves only), published in old_verify_keys.
-- Written by `trioserver rotate-signing-key`.
CREATE TABLE old_signing_keys (
    key_id      TEXT PRIMARY KEY,
    verify_key  BLOB NOT NULL,
    expired_ts  INTEGER NOT NULL
) STRICT;

-- 0008: cross-signing signatures (spec "Cross-signing").
--
-- Signatures uploaded through /keys/signatures/upload, kept apart from the signed objects so
-- re-uploading a device's keys (or the same cross-signing keys) does not drop them.
-- target_key_id is a device ID or the public part of a master key; signatures by another user
-- (their user-signing key on our master key) are visible only to that user.
CREATE TABLE cross_signing_signatures (
    target_user_id     TEXT    NOT NULL,
    target_key_id      TEXT    NOT NULL,
    signer_user_id     TEXT    NOT NULL,
    signing_key_id     TEXT    NOT NULL,
    signature          TEXT    NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signing_key_id)
) STRICT, WITHOUT ROWID;

-- 0010: the media repository (spec 1.28 "Content repository").
--
-- Bytes live in the blob store (<data_dir>/media/ab/cd/<sha256>), addressed by the sha256 kept
-- here; a client string never names a file. Identical content is stored once, so several rows
-- may share a sha256: a blob is deleted only once no row of either table refers to it.
CREATE TABLE media (
    server_name   TEXT NOT NULL,
    media_id      TEXT NOT NULL,
    uploader      TEXT NOT NULL,
    content_type  TEXT,                             -- NULL until uploaded (async create)
    filename      TEXT,
    size          INTEGER,                          -- bytes; NULL until uploaded
    sha256        TEXT,                             -- hex; NULL until uploaded
    created_ts    INTEGER NOT NULL,                 -- ms
    expires_ts    INTEGER,                          -- ms; only for created-but-unused ids
    PRIMARY KEY (server_name, media_id)
) STRICT;
CREATE INDEX media_created ON media (created_ts);
CREATE INDEX media_uploader ON media (uploader);
CREATE INDEX media_sha256 ON media (sha256);

CREATE TABLE media_thumbnails (
    server_name   TEXT NOT NULL,
    media_id      TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    method        TEXT NOT NULL,                    -- crop | scale
    animated      INTEGER NOT NULL,                 -- 0 | 1
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method, animated),
    FOREIGN KEY (server_name, media_id) REFERENCES media (server_name, media_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

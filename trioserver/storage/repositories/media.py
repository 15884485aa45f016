"""media and media_thumbnails: metadata of uploaded content; the bytes are in the blob store."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

_COLUMNS = ("server_name, media_id, uploader, content_type, filename, size, sha256, created_ts,"
            " expires_ts")


@dataclass(frozen=True)
class MediaRow:
    server_name: str
    media_id: str
    uploader: str
    content_type: str | None
    filename: str | None
    size: int | None
    sha256: str | None
    created_ts: int
    expires_ts: int | None

    @property
    def uploaded(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class ThumbnailRow:
    content_type: str
    size: int
    sha256: str


class MediaExists(Exception):
    """The (server_name, media_id) pair is taken."""


def insert(conn: apsw.Connection, row: MediaRow) -> None:
    try:
        conn.execute(
            f"INSERT INTO media ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.server_name, row.media_id, row.uploader, row.content_type, row.filename,
             row.size, row.sha256, row.created_ts, row.expires_ts),
        )
    except apsw.ConstraintError:
        raise MediaExists from None


def get(conn: apsw.Connection, server_name: str, media_id: str) -> MediaRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM media WHERE server_name = ? AND media_id = ?",
                       (server_name, media_id)).fetchone()
    return MediaRow(*row) if row else None


def fill_pending(conn: apsw.Connection, server_name: str, media_id: str, *, content_type: str,
                 filename: str | None, size: int, sha256: str) -> bool:
    """Attach content to a created-but-unused id; False if it was filled meanwhile."""
    changed = conn.execute(
        "UPDATE media SET content_type = ?, filename = ?, size = ?, sha256 = ?, expires_ts = NULL"
        " WHERE server_name = ? AND media_id = ? AND sha256 IS NULL RETURNING 1",
        (content_type, filename, size, sha256, server_name, media_id),
    ).fetchall()
    return bool(changed)


def count_pending(conn: apsw.Connection, uploader: str, now_ms: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM media WHERE uploader = ? AND sha256 IS NULL AND expires_ts > ?",
        (uploader, now_ms),
    ).fetchone()
    return int(row[0]) if row else 0


def bytes_used(conn: apsw.Connection, uploader: str) -> int:
    row = conn.execute("SELECT coalesce(sum(size), 0) FROM media WHERE uploader = ?",
                       (uploader,)).fetchone()
    return int(row[0]) if row else 0


def delete_expired_pending(conn: apsw.Connection, now_ms: int) -> int:
    return len(conn.execute(
        "DELETE FROM media WHERE sha256 IS NULL AND expires_ts <= ? RETURNING 1", (now_ms,)
    ).fetchall())


def get_thumbnail(conn: apsw.Connection, server_name: str, media_id: str, width: int,
                  height: int, method: str, animated: bool) -> ThumbnailRow | None:
    row = conn.execute(
        "SELECT content_type, size, sha256 FROM media_thumbnails WHERE server_name = ?"
        " AND media_id = ? AND width = ? AND height = ? AND method = ? AND animated = ?",
        (server_name, media_id, width, height, method, int(animated)),
    ).fetchone()
    return ThumbnailRow(*row) if row else None


def insert_thumbnail(conn: apsw.Connection, server_name: str, media_id: str, width: int,
                     height: int, method: str, animated: bool, thumb: ThumbnailRow) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO media_thumbnails (server_name, media_id, width, height, method,"
        " animated, content_type, size, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (server_name, media_id, width, height, method, int(animated), thumb.content_type,
         thumb.size, thumb.sha256),
    )


def delete_created_before(conn: apsw.Connection, before_ms: int) -> int:
    """Delete media (and, by cascade, their thumbnails) created before `before_ms`."""
    return len(conn.execute("DELETE FROM media WHERE created_ts < ? RETURNING 1",
                            (before_ms,)).fetchall())


def referenced_hashes(conn: apsw.Connection) -> set[str]:
    rows = conn.execute("SELECT sha256 FROM media WHERE sha256 IS NOT NULL"
                        " UNION SELECT sha256 FROM media_thumbnails")
    return {r[0] for r in rows}


@dataclass(frozen=True)
class MediaStats:
    media: int
    pending: int
    media_bytes: int
    thumbnails: int
    thumbnail_bytes: int
    uploaders: int


def stats(conn: apsw.Connection) -> MediaStats:
    m = conn.execute("SELECT count(*), count(*) - count(sha256), coalesce(sum(size), 0),"
                     " count(DISTINCT uploader) FROM media").fetchone()
    t = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM media_thumbnails").fetchone()
    assert m is not None
    assert t is not None
    return MediaStats(media=m[0], pending=m[1], media_bytes=m[2], thumbnails=t[0],
                      thumbnail_bytes=t[1], uploaders=m[3])

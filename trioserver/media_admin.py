"""`trioserver media purge | stats`: offline housekeeping of the media repository.

Run against the data directory, preferably with the server stopped. Purging deletes metadata
first (one transaction) and only then the files no row refers to any more, so a crash half-way
leaves unreferenced files (swept by the next purge), never rows pointing at missing files.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import apsw

from trioserver.config import Config
from trioserver.storage.blob_store import BlobStore
from trioserver.storage.db import Database, DatabaseError
from trioserver.storage.repositories import media as media_repo


def _parse_day(value: str) -> int:
    day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(day.timestamp() * 1000)


def purge(db: Database, blobs: BlobStore, before_ms: int, grace_s: float) -> dict[str, int]:
    deleted = db.write_sync(lambda conn: media_repo.delete_created_before(conn, before_ms))
    referenced = db.read_sync(media_repo.referenced_hashes)
    files, freed = blobs.sweep(referenced.__contains__, grace_s=grace_s)
    return {"media_deleted": deleted, "files_deleted": files, "bytes_freed": freed}


def stats(db: Database, blobs: BlobStore) -> dict[str, int]:
    s = db.read_sync(media_repo.stats)
    files = list(blobs.iter_blobs())
    return {
        "media": s.media,
        "pending_uploads": s.pending,
        "media_bytes": s.media_bytes,
        "thumbnails": s.thumbnails,
        "thumbnail_bytes": s.thumbnail_bytes,
        "uploaders": s.uploaders,
        "files": len(files),
        "file_bytes": sum(size for _, size in files),
    }


def run_media_command(config: Config, args: argparse.Namespace) -> int:
    if args.media_command == "purge":
        try:
            before_ms = _parse_day(args.before)
        except ValueError:
            print("trioserver: --before: expected a date as YYYY-MM-DD", file=sys.stderr)
            return 2
    if not config.database_path.exists():
        print(f"trioserver: no database at {config.database_path}", file=sys.stderr)
        return 1
    try:
        db = Database.open(config.database_path, readers=1,
                           synchronous=config.database.synchronous)
    except DatabaseError as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    blobs = BlobStore(config.data_dir / "media")
    try:
        if args.media_command == "purge":
            result = purge(db, blobs, before_ms, args.grace_s)
        else:
            result = stats(db, blobs)
    except (OSError, apsw.Error) as e:
        print(f"trioserver: {e}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(json.dumps(result))
    return 0

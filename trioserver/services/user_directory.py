"""User directory search (spec "User directory": POST /user_directory/search)."""

from __future__ import annotations

from typing import Any

from trioserver.storage.db import Database
from trioserver.storage.repositories import user_directory as directory_repo

MAX_LIMIT = 100
MAX_TERM_CHARS = 256


class UserDirectory:
    def __init__(self, db: Database, *, search_all_users: bool) -> None:
        self._db = db
        self._search_all_users = search_all_users

    async def search(self, user_id: str, term: str, limit: int) -> dict[str, Any]:
        """Users sharing a room with `user_id` or in a public room (or, when configured, all
        local users) whose ID localpart or display name contains `term`."""
        term = term.strip()[:MAX_TERM_CHARS]
        limit = min(limit, MAX_LIMIT)
        if not term or limit == 0:
            return {"results": [], "limited": False}
        found = await self._db.read(lambda c: directory_repo.search(
            c, user_id, term, limit + 1, all_local_users=self._search_all_users))
        results: list[dict[str, Any]] = []
        for user in found[:limit]:
            entry: dict[str, Any] = {"user_id": user.user_id}
            if user.display_name is not None:
                entry["display_name"] = user.display_name
            if user.avatar_url is not None:
                entry["avatar_url"] = user.avatar_url
            results.append(entry)
        return {"results": results, "limited": len(found) > limit}

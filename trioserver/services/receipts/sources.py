"""The /sync stream sources of this package: receipts ("rc") and unread counts ("un").

"rc" sends receipts as `m.receipt` ephemeral events; "un" sends `unread_notifications` (and
`unread_thread_notifications`) for every joined room on an initial sync, and afterwards for the
rooms whose counts changed: a notification for the user, their own read receipt, a redaction of
a notified event, their join. Each has its own position: the newest `stream_id` of its table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from trioserver.services.push.threads import MAIN
from trioserver.services.stream_position import PositionedSource
from trioserver.services.sync.streams import RoomExtras, SyncContext, SyncResult
from trioserver.storage.repositories import push as push_repo
from trioserver.storage.repositories import receipts as receipts_repo
from trioserver.storage.repositories.receipts import UNTHREADED, ReceiptRow


def receipt_events(rows: Sequence[ReceiptRow]) -> list[dict[str, Any]]:
    """`m.receipt` events for one room's receipts.

    All go into one event, except that one event can hold only one receipt per (event, type,
    user): a user's receipts of one type in two threads at the same event overflow into a second
    event (the spec batches receipts per room and thread).
    """
    contents: list[dict[str, Any]] = []
    for row in rows:
        receipt: dict[str, Any] = {"ts": row.ts}
        if row.thread_id != UNTHREADED:
            receipt["thread_id"] = row.thread_id
        for content in contents:
            users = content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})
            if row.user_id not in users:
                users[row.user_id] = receipt
                break
        else:
            contents.append({row.event_id: {row.receipt_type: {row.user_id: receipt}}})
    return [{"type": "m.receipt", "content": c} for c in contents]


class ReceiptsSource(PositionedSource):
    """Receipts in the user's joined rooms ("rc"); m.read.private only to its owner."""

    name = "rc"

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        if not ctx.joined_rooms or (since is not None and since >= upto):
            return
        joined = list(ctx.joined_rooms)
        if since is None:
            rows = await self._db.read(
                lambda c: receipts_repo.receipts_in_rooms(c, joined, upto, ctx.user_id))
        else:
            wanted = set(joined)
            rows = [r for r in await self._db.read(
                lambda c: receipts_repo.receipts_between(c, since, upto, ctx.user_id))
                if r.room_id in wanted]
        by_room: dict[str, list[ReceiptRow]] = {}
        for row in rows:
            by_room.setdefault(row.room_id, []).append(row)
        for room_id, room_rows in by_room.items():
            out.room(room_id).ephemeral.extend(receipt_events(room_rows))


def _counts(n: int, h: int) -> dict[str, int]:
    return {"notification_count": n, "highlight_count": h}


def apply_counts(extras: RoomExtras, counts: dict[str, tuple[int, int]]) -> None:
    """Room totals into `unread_notifications`, per-thread counts (threads with
    notifications only) into `unread_thread_notifications`."""
    extras.unread_notifications = _counts(sum(n for n, _ in counts.values()),
                                          sum(h for _, h in counts.values()))
    threads = {t: _counts(n, h) for t, (n, h) in sorted(counts.items()) if t != MAIN}
    extras.unread_thread_notifications = threads or None


def shape_for_filter(extras: RoomExtras, unread_thread_notifications: bool) -> None:
    """For the sync engine, per the filter's `unread_thread_notifications`: when true,
    `unread_notifications` counts only the main timeline and the per-thread counts stay; when
    false (the default), the counts are the whole room's and per-thread counts are dropped."""
    threads = extras.unread_thread_notifications
    if not unread_thread_notifications:
        extras.unread_thread_notifications = None
        return
    if extras.unread_notifications is None or not threads:
        return
    total = extras.unread_notifications
    extras.unread_notifications = {
        key: total[key] - sum(t.get(key, 0) for t in threads.values()) for key in total}


class UnreadCountsSource(PositionedSource):
    """Unread notification counts of the user's joined rooms ("un")."""

    name = "un"

    async def collect(self, ctx: SyncContext, since: int | None, upto: int,
                      out: SyncResult) -> None:
        if not ctx.joined_rooms or (since is not None and since >= upto):
            return
        joined = set(ctx.joined_rooms)

        def txn(conn: apsw.Connection) -> dict[str, dict[str, tuple[int, int]]]:
            rooms = list(ctx.joined_rooms) if since is None else [
                r for r in receipts_repo.unread_changed_rooms(conn, ctx.user_id, since, upto)
                if r in joined]
            return {r: push_repo.unread_counts(conn, ctx.user_id, r) for r in rooms}

        for room_id, counts in (await self._db.read(txn)).items():
            apply_counts(out.room(room_id), counts)

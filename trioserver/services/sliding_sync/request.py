"""Parse a sliding sync request, in either wire shape, into a `SlidingRequest`.

- `parse_v4`: `POST /_matrix/client/v4/sync`, MSC4186 as merged: everything is in the body,
  lists have one `range`, `required_state` is `{include, exclude, lazy_members}`, extensions use
  the prefixed keys their MSCs mandate on the stable endpoint (`org.matrix.msc4508.typing`...).
- `parse_unstable`: `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`, the
  shape Synapse serves and Element X / matrix-rust-sdk send: `pos` and `timeout` in the query
  string, `ranges`, `required_state` as `[type, state_key]` pairs with `*`/`$LAZY`/`$ME`,
  `is_invite`, plain extension keys.

Errors are `MatrixError`s naming the field, as Synapse's `validate_json_object` chooses them: a
wrong type is 400 M_BAD_JSON, a missing required field M_MISSING_PARAM, a value out of range
(negative, too many lists, bad list key) M_INVALID_PARAM. Unknown keys are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from trioserver.errors import Codes, MatrixError
from trioserver.services.sliding_sync.model import (
    MAX_LISTS,
    MAX_SUBSCRIPTIONS,
    MAX_TIMELINE_LIMIT,
    Extensions,
    ExtensionScope,
    ListConfig,
    RequiredState,
    RoomConfig,
    RoomFilters,
    SlidingRequest,
    StatePattern,
)

MAX_STRING = 1024  # conn_id, pos, event types, state keys, tags, room IDs...
MAX_ITEMS = 1000  # entries in one array (required_state, filters, ranges, extension scopes)
MAX_TIMEOUT_MS = 10**15
MAX_TO_DEVICE_LIMIT = 1000
PRESENCE_STATES = frozenset({"online", "offline", "unavailable"})
_LIST_KEY = re.compile(r"[A-Za-z0-9._~-]{1,64}")  # opaque identifier grammar, at most 64
_DIGITS = re.compile(r"[0-9]{1,15}")
_MEMBER = "m.room.member"
_WILDCARD, _LAZY, _ME = "*", "$LAZY", "$ME"

# On the v4 endpoint each extension is looked up under the key its MSC mandates there until it
# is accepted, then under the plain key (which becomes the stable one). The to_device, e2ee and
# typing keys are in MSC4538/MSC4543/MSC4508; account_data and receipts follow the same pattern
# for MSC3959/MSC3960, whose texts name no prefixed key yet.
_V4_EXTENSION_KEYS = {
    "to_device": ("org.matrix.msc4538.to_device", "to_device"),
    "e2ee": ("org.matrix.msc4543.e2ee", "e2ee"),
    "account_data": ("org.matrix.msc3959.account_data", "account_data"),
    "receipts": ("org.matrix.msc3960.receipts", "receipts"),
    "typing": ("org.matrix.msc4508.typing", "typing"),
}


def _bad(path: str, what: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, f"'{path}' must be {what}")


def _invalid(path: str, why: str) -> MatrixError:
    return MatrixError(400, Codes.INVALID_PARAM, f"'{path}' {why}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Obj:
    """A JSON object being read, and its path for error messages (`lists.all_rooms.ranges`)."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, dict):
            if not path:
                raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
            raise _bad(path, "an object")
        self.raw: dict[str, Any] = raw
        self.path = path

    def at(self, key: str) -> str:
        shown = key if len(key) <= 80 else key[:77] + "..."
        return f"{self.path}.{shown}" if self.path else shown

    def _typed(self, key: str, kind: type, what: str) -> Any:
        value = self.raw.get(key)  # JSON null reads as absent
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise _bad(self.at(key), what)
        return value

    def _missing(self, key: str) -> MatrixError:
        return MatrixError(400, Codes.MISSING_PARAM, f"Missing '{self.at(key)}'")

    def opt_str(self, key: str) -> str | None:
        value: str | None = self._typed(key, str, "a string")
        if value is not None and len(value) > MAX_STRING:
            raise _invalid(self.at(key), "is too long")
        return value

    def opt_bool(self, key: str) -> bool | None:
        value: bool | None = self._typed(key, bool, "a boolean")
        return value

    def opt_int(self, key: str, *, minimum: int = 0, maximum: int | None = None) -> int | None:
        value: int | None = self._typed(key, int, "an integer")
        if value is not None and value < minimum:
            raise _invalid(self.at(key), f"must be at least {minimum}")
        if value is not None and maximum is not None and value > maximum:
            raise _invalid(self.at(key), f"must be at most {maximum}")
        return value

    def req_int(self, key: str) -> int:
        value = self.opt_int(key)
        if value is None:
            raise self._missing(key)
        return value

    def obj(self, key: str) -> _Obj | None:
        value = self.raw.get(key)
        return None if value is None else _Obj(value, self.at(key))

    def req_obj(self, key: str) -> _Obj:
        value = self.obj(key)
        if value is None:
            raise self._missing(key)
        return value

    def array(self, key: str) -> list[Any] | None:
        value: list[Any] | None = self._typed(key, list, "an array")
        if value is not None and len(value) > MAX_ITEMS:
            raise _invalid(self.at(key), f"has more than {MAX_ITEMS} entries")
        return value

    def strings(self, key: str, *, nulls: bool = False) -> tuple[Any, ...] | None:
        """An array of strings (and of nulls, with `nulls`); None when absent."""
        items = self.array(key)
        if items is None:
            return None
        for item in items:
            if item is None and nulls:
                continue
            if not isinstance(item, str):
                raise _bad(self.at(key), "an array of strings" + (" or nulls" if nulls else ""))
            if len(item) > MAX_STRING:
                raise _invalid(self.at(key), "has an entry that is too long")
        return tuple(items)


# --- the two entry points -----------------------------------------------------------------------


def parse_v4(body: Any, user_id: str) -> SlidingRequest:
    """The body of `POST /_matrix/client/v4/sync` (MSC4186 "Request Body")."""
    obj = _Obj(body, "")
    set_presence = obj.raw.get("set_presence")
    if set_presence is not None and (not isinstance(set_presence, str)
                                     or set_presence not in PRESENCE_STATES):
        raise _invalid("set_presence", "must be one of online, offline, unavailable")
    return SlidingRequest(
        conn_id=obj.opt_str("conn_id") or "",
        pos=obj.opt_str("pos"),
        timeout_ms=obj.opt_int("timeout", maximum=MAX_TIMEOUT_MS) or 0,
        set_presence=set_presence,
        lists=_lists(obj, lambda o: _v4_list(o, user_id), opaque_keys=True),
        room_subscriptions=_subscriptions(obj, lambda o: _v4_room_config(o, user_id),
                                          strict=True),
        extensions=_extensions(obj, v4=True),
    )


def parse_unstable(body: Any, query: Mapping[str, str], user_id: str) -> SlidingRequest:
    """The unstable shape: the body plus the `pos`, `timeout` and `set_presence` query
    parameters.

    Like Synapse's SlidingSyncRestServlet, a `pos`/`timeout` in the body is ignored. ruma
    (matrix-rust-sdk) puts `set_presence` in the query string; Synapse ignores it, so an unknown
    value is ignored too (None) rather than refused.
    """
    obj = _Obj(body, "")
    set_presence = query.get("set_presence")
    pos = query.get("pos")
    if pos is not None and len(pos) > MAX_STRING:
        raise _invalid("pos", "is too long")
    timeout = query.get("timeout")
    if timeout is not None and not _DIGITS.fullmatch(timeout):
        raise MatrixError(400, Codes.INVALID_PARAM,
                          "Query parameter timeout must be a non-negative integer (ms)")
    return SlidingRequest(
        conn_id=obj.opt_str("conn_id") or "",
        pos=pos,
        timeout_ms=int(timeout) if timeout is not None else 0,
        set_presence=set_presence if set_presence in PRESENCE_STATES else None,
        lists=_lists(obj, lambda o: _unstable_list(o, user_id), opaque_keys=False),
        room_subscriptions=_subscriptions(obj, lambda o: _unstable_room_config(o, user_id),
                                          strict=False),
        extensions=_extensions(obj, v4=False),
    )


# --- lists and subscriptions --------------------------------------------------------------------


def _lists(body: _Obj, parse: Callable[[_Obj], ListConfig], *, opaque_keys: bool
           ) -> dict[str, ListConfig]:
    lists = body.obj("lists")
    if lists is None:
        return {}
    if len(lists.raw) > MAX_LISTS:
        raise _invalid("lists", f"has more than {MAX_LISTS} lists")
    out: dict[str, ListConfig] = {}
    for key, raw in lists.raw.items():
        # v4: opaque identifiers (MSC4186); unstable: Synapse only caps the length at 64.
        if (not _LIST_KEY.fullmatch(key)) if opaque_keys else len(key) > 64:
            raise _invalid(lists.at(key), "is not a valid list key (1-64 of [A-Za-z0-9._~-])")
        out[key] = parse(_Obj(raw, lists.at(key)))
    return out


def _subscriptions(body: _Obj, parse: Callable[[_Obj], RoomConfig], *, strict: bool
                   ) -> dict[str, RoomConfig]:
    subs = body.obj("room_subscriptions")
    if subs is None:
        return {}
    # The unstable shape has no limit in Synapse; the body size bounds it.
    if strict and len(subs.raw) > MAX_SUBSCRIPTIONS:
        raise _invalid("room_subscriptions", f"has more than {MAX_SUBSCRIPTIONS} rooms")
    out: dict[str, RoomConfig] = {}
    for room_id, raw in subs.raw.items():
        if not room_id.startswith("!") or len(room_id) > 255:
            if strict:
                raise _invalid(subs.at(room_id), "is not a room ID")
            continue  # Synapse silently skips subscriptions to rooms it cannot find
        out[room_id] = parse(_Obj(raw, subs.at(room_id)))
    return out


def _range(value: Any, path: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) for v in value):
        raise _bad(path, "[start, end] (two integers)")
    start, end = value
    if start < 0 or end < start:
        raise _invalid(path, "must have 0 <= start <= end")
    return start, end


def _timeline_limit(obj: _Obj) -> int:
    return min(obj.req_int("timeline_limit"), MAX_TIMELINE_LIMIT)  # "the server may cap it"


def _v4_list(obj: _Obj, user_id: str) -> ListConfig:
    raw_range = obj.raw.get("range")
    return ListConfig(
        config=_v4_room_config(obj, user_id),
        ranges=None if raw_range is None else (_range(raw_range, obj.at("range")),),
        filters=_filters(obj.obj("filters"), invited_keys=("is_invited",)),
    )


def _unstable_list(obj: _Obj, user_id: str) -> ListConfig:
    ranges: tuple[tuple[int, int], ...] | None = None
    raw_ranges = obj.array("ranges")
    if raw_ranges is not None:
        ranges = tuple(_range(r, f"{obj.at('ranges')}[{i}]") for i, r in enumerate(raw_ranges))
    elif obj.raw.get("range") is not None:
        ranges = (_range(obj.raw["range"], obj.at("range")),)
    if obj.opt_bool("slow_get_all_rooms"):
        ranges = None  # Synapse: "When true, the `ranges` field is ignored."
    # No `ranges` at all reads as the whole list, as Synapse documents (its code sends only the
    # count then; ruma always sends `ranges`). `ranges: []` is no window: no rooms.
    return ListConfig(
        config=_unstable_room_config(obj, user_id),
        ranges=ranges,
        filters=_filters(obj.obj("filters"), invited_keys=("is_invite", "is_invited")),
    )


def _filters(obj: _Obj | None, *, invited_keys: tuple[str, ...]) -> RoomFilters:
    """SlidingRoomFilter; `room_name_like` and unknown keys are ignored."""
    if obj is None:
        return RoomFilters()
    is_invited = None
    for key in invited_keys:
        is_invited = obj.opt_bool(key)
        if is_invited is not None:
            break
    return RoomFilters(
        is_dm=obj.opt_bool("is_dm"),
        spaces=obj.strings("spaces"),
        is_encrypted=obj.opt_bool("is_encrypted"),
        is_invited=is_invited,
        room_types=obj.strings("room_types", nulls=True),
        not_room_types=obj.strings("not_room_types", nulls=True),
        tags=obj.strings("tags"),
        not_tags=obj.strings("not_tags"),
    )


# --- required_state -----------------------------------------------------------------------------


def _v4_room_config(obj: _Obj, user_id: str) -> RoomConfig:
    """`{timeline_limit, required_state: {include, exclude, lazy_members}}`."""
    limit = _timeline_limit(obj)
    rs = obj.req_obj("required_state")
    return RoomConfig(limit, RequiredState(
        include=_v4_patterns(rs, "include", user_id),
        exclude=_v4_patterns(rs, "exclude", user_id),
        lazy_members=rs.opt_bool("lazy_members") or False,
    ))


def _v4_patterns(rs: _Obj, key: str, user_id: str) -> frozenset[StatePattern]:
    out: set[StatePattern] = set()
    for i, raw in enumerate(rs.array(key) or ()):
        element = _Obj(raw, f"{rs.at(key)}[{i}]")
        state_key = element.opt_str("state_key")
        out.add(StatePattern(element.opt_str("type"), user_id if state_key == _ME else state_key))
    return frozenset(out)


def _unstable_room_config(obj: _Obj, user_id: str) -> RoomConfig:
    """`{timeline_limit, required_state: [[type, state_key], ...]}`.

    `required_state` may be absent: Synapse requires it, but ruma (matrix-rust-sdk) leaves an
    empty one out of the JSON, so absent reads as `[]`.
    """
    limit = _timeline_limit(obj)
    pairs: list[tuple[str, str]] = []
    path = obj.at("required_state")
    for i, pair in enumerate(obj.array("required_state") or ()):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(s, str) and len(s) <= MAX_STRING for s in pair)):
            raise _bad(f"{path}[{i}]", "a [type, state_key] pair of strings")
        pairs.append((pair[0], pair[1]))
    return RoomConfig(limit, unstable_required_state(pairs, user_id))


def unstable_required_state(pairs: Iterable[tuple[str, str]], user_id: str) -> RequiredState:
    """Convert the unstable `[type, state_key]` list the way Synapse interprets it.

    Synapse (synapse/types/handlers/sliding_sync.py `RoomSyncConfig.from_room_config`, used by
    `SlidingSyncHandler.get_room_sync_data` in synapse/handlers/sliding_sync/__init__.py):
    - `["*", "*"]` anywhere collapses the whole list to "all state" and every other entry is
      dropped, `$LAZY` included (so all members are sent). MSC3575 said the other entries
      should then act as exclusions; Synapse never implemented that ("it's not wrong to return
      more state than requested"), and clients rely on Synapse, so neither do we.
    - `["m.room.member", "*"]` wins over `["m.room.member", "$LAZY"]` in either order.
    - `$LAZY` is special only as the state key of `m.room.member`; elsewhere it is literal.
    - `$ME` is the requester's user ID, for any event type.
    - `"*"` is a wildcard for either element (for a wildcard type Synapse over-returns all
      state as a shortcut; we match exactly, which is the documented meaning).
    """
    wanted = set(pairs)
    if (_WILDCARD, _WILDCARD) in wanted:
        return RequiredState(include=frozenset({StatePattern()}))
    lazy = (_MEMBER, _LAZY) in wanted and (_MEMBER, _WILDCARD) not in wanted
    include = frozenset(
        StatePattern(
            None if event_type == _WILDCARD else event_type,
            None if state_key == _WILDCARD else user_id if state_key == _ME else state_key,
        )
        for event_type, state_key in wanted
        if (event_type, state_key) != (_MEMBER, _LAZY)
    )
    return RequiredState(include=include, lazy_members=lazy)


# --- extensions ---------------------------------------------------------------------------------


def _extensions(body: _Obj, *, v4: bool) -> Extensions:
    """to_device, e2ee, account_data, receipts, typing; unknown keys are ignored, a missing or
    null `enabled` is false. A disabled extension keeps its defaults (but is still checked)."""
    ext = body.obj("extensions")
    if ext is None:
        return Extensions()

    def section(name: str) -> _Obj | None:
        for key in _V4_EXTENSION_KEYS[name] if v4 else (name,):
            if ext.raw.get(key) is not None:
                return ext.obj(key)
        return None

    to_device, e2ee = section("to_device"), section("e2ee")
    to_device_on = _enabled(to_device)
    since, limit = None, 100
    if to_device is not None:
        since = to_device.opt_str("since")
        # MSC4538: `limit` must be positive; Synapse (unstable) also accepts 0.
        raw_limit = to_device.opt_int("limit", minimum=1 if v4 else 0)
        limit = min(raw_limit if raw_limit is not None else 100, MAX_TO_DEVICE_LIMIT)
    return Extensions(
        to_device=to_device_on,
        to_device_since=since if to_device_on else None,
        to_device_limit=limit if to_device_on else 100,
        e2ee=_enabled(e2ee),
        account_data=_scope(section("account_data")),
        receipts=_scope(section("receipts")),
        typing=_scope(section("typing")),
    )


def _enabled(obj: _Obj | None) -> bool:
    return obj is not None and obj.opt_bool("enabled") is True


def _scope(obj: _Obj | None) -> ExtensionScope | None:
    """A per-room extension's `lists`/`rooms` (MSC4508): absent = all, `[]` = none, an entry
    `"*"` = all (Synapse's old default `["*"]`), JSON null = none (as in Synapse, whose
    `find_relevant_room_ids_for_extension` processes nothing for None). None if disabled."""
    if obj is None:
        return None
    scope = ExtensionScope(lists=_scope_entries(obj, "lists"), rooms=_scope_entries(obj, "rooms"))
    return scope if _enabled(obj) else None


def _scope_entries(obj: _Obj, key: str) -> tuple[str, ...] | None:
    if key not in obj.raw:
        return None
    entries = obj.strings(key)
    if entries is None:  # explicit null
        return ()
    return None if _WILDCARD in entries else entries

"""Server-side search (spec: Client-Server API, "Server Side Search" module)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from trioserver.api.http import Fields, authenticate, json_body, reply
from trioserver.errors import Codes, MatrixError
from trioserver.services.container import Services
from trioserver.services.rooms.reads import EventFilter
from trioserver.services.search import MAX_LIMIT, SearchRequest

DEFAULT_KEYS = ["content.body", "content.name", "content.topic"]


def _bad(message: str) -> MatrixError:
    return MatrixError(400, Codes.BAD_JSON, message)


def _opt_list(raw: dict[str, Any], name: str) -> list[str] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or \
            len(value) > 1000:
        raise _bad(f"filter.{name} must be a list of strings")
    return value


def _int(raw: dict[str, Any], name: str, default: int, hi: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer")
    return max(0, min(value, hi))


def parse_request(body: Fields, next_batch: str | None) -> SearchRequest:
    """The `room_events` criteria, validated (the only category this server supports)."""
    categories = body.opt_dict("search_categories")
    if categories is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'search_categories'")
    raw = categories.get("room_events")
    if raw is None:
        raise MatrixError(400, Codes.BAD_JSON, "Only room_events can be searched")
    if not isinstance(raw, dict):
        raise _bad("'room_events' must be an object")
    crit = Fields(raw)
    term = crit.req_str("search_term", max_len=1000)
    keys = crit.str_list("keys") if "keys" in crit else DEFAULT_KEYS
    if any(k not in DEFAULT_KEYS for k in keys):
        raise _bad(f"keys must be among {DEFAULT_KEYS}")
    order_by = crit.opt_str("order_by") or "rank"
    if order_by not in ("rank", "recent"):
        raise _bad("order_by must be 'rank' or 'recent'")
    flt = crit.opt_dict("filter") or {}
    context = crit.opt_dict("event_context")
    groupings_raw = crit.opt_dict("groupings") or {}
    group_by = groupings_raw.get("group_by", [])
    if not isinstance(group_by, list) or not all(
            isinstance(g, dict) and g.get("key") in ("room_id", "sender") for g in group_by):
        raise _bad("groupings.group_by must be a list of {key: room_id | sender}")
    include_profile = False
    if context is not None:
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise _bad("event_context.include_profile must be a boolean")
    return SearchRequest(
        search_term=term,
        keys=keys,
        event_filter=EventFilter(
            limit=_int(flt, "limit", 10, MAX_LIMIT),
            types=_opt_list(flt, "types"), not_types=_opt_list(flt, "not_types") or [],
            senders=_opt_list(flt, "senders"),
            not_senders=_opt_list(flt, "not_senders") or []),
        rooms=_opt_list(flt, "rooms"),
        not_rooms=_opt_list(flt, "not_rooms") or [],
        order_by=order_by,
        before_limit=None if context is None else _int(context, "before_limit", 5, 100),
        after_limit=5 if context is None else _int(context, "after_limit", 5, 100),
        include_profile=include_profile,
        include_state=crit.opt_bool("include_state"),
        groupings=list(dict.fromkeys(str(g["key"]) for g in group_by)),
        next_batch=next_batch,
    )


def create_blueprint(services: Services) -> Blueprint:
    bp = Blueprint("search", __name__)

    @bp.route("/_matrix/client/v3/search", methods=["POST"])
    async def search() -> Response:
        """POST /_matrix/client/v3/search (spec: search)."""
        requester = await authenticate(services.sessions)
        req = parse_request(await json_body(), request.args.get("next_batch"))
        return reply(await services.search.search(requester.user_id, req))

    return bp

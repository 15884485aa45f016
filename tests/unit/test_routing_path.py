"""routing_path and restore_slashes: a percent-encoded '/' stays inside its segment."""

from __future__ import annotations

from typing import Any

from trioserver.api.routing import ENCODED_SLASH, restore_slashes, routing_path

S = ENCODED_SLASH


def test_plain_paths_are_unchanged() -> None:
    assert routing_path(b"/a/b%20c", "/a/b c") == "/a/b c"


def test_encoded_slashes_stay_in_their_segment() -> None:
    assert routing_path(b"/k/%2Fx/y", "/k//x/y") == f"/k/{S}x/y"
    assert routing_path(b"/k/x%2f/y", "/k/x//y") == f"/k/x{S}/y"
    assert routing_path(b"/k/%2F%2F/%24a%2Fb", "/k////$a/b") == f"/k/{S}{S}/$a{S}b"


def test_other_escapes_still_decode() -> None:
    routed = routing_path(b"/r/%21room%3Ahs/%2F%C3%A9", "/r/!room:hs//\u00e9")
    assert routed == f"/r/!room:hs/{S}\u00e9"


def test_a_path_already_holding_the_marker_is_left_alone() -> None:
    path = f"/k/{S}/x/y"
    assert routing_path(b"/k/%F4%8F%BF%BF%2Fx/y", path) == path


def test_restore_slashes() -> None:
    values: dict[str, Any] = {"a": f"{S}x{S}", "b": 3, "c": "plain"}
    restore_slashes("endpoint", values)
    assert values == {"a": "/x/", "b": 3, "c": "plain"}
    restore_slashes("endpoint", None)

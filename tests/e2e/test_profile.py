"""Profiles: displayname, avatar_url, m.tz and custom fields; limits and validation."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.helpers import bearer, register, unique

PROFILE = "/_matrix/client/v3/profile"


def _path(user_id: str, key: str | None = None) -> str:
    path = f"{PROFILE}/{quote(user_id, safe='@:')}"
    return path if key is None else f"{path}/{quote(key, safe='')}"


async def _put(http: httpx.AsyncClient, reg: dict[str, Any], key: str, value: Any
               ) -> httpx.Response:
    return await http.put(_path(reg["user_id"], key), json={key: value},
                          headers=bearer(reg["access_token"]))


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


async def test_new_user_displayname_is_localpart(http: httpx.AsyncClient) -> None:
    username = unique("prof")
    reg = await register(http, username)
    r = await http.get(_path(reg["user_id"]))  # no auth needed
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": username}
    r = await http.get(_path(reg["user_id"], "displayname"))
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": username}


async def test_set_displayname_and_avatar(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await _put(http, reg, "displayname", "Alice Liddell")
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await _put(http, reg, "avatar_url", "mxc://example.org/SEsfnsuifSDFSSEF")
    assert r.status_code == 200, r.text

    r = await http.get(_path(reg["user_id"], "displayname"))
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": "Alice Liddell"}
    r = await http.get(_path(reg["user_id"], "avatar_url"))
    assert r.status_code == 200, r.text
    assert r.json() == {"avatar_url": "mxc://example.org/SEsfnsuifSDFSSEF"}
    r = await http.get(_path(reg["user_id"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": "Alice Liddell",
                        "avatar_url": "mxc://example.org/SEsfnsuifSDFSSEF"}


async def test_avatar_url_must_be_mxc(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    for bad in ("http://x", "https://example.org/a.png", "mxc://", 5):
        r = await _put(http, reg, "avatar_url", bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errcode"] == "M_BAD_JSON", (bad, r.text)
    r = await http.get(_path(reg["user_id"], "avatar_url"))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_timezone_field(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await _put(http, reg, "m.tz", "Europe/London")
    assert r.status_code == 200, r.text
    r = await http.get(_path(reg["user_id"], "m.tz"))
    assert r.status_code == 200, r.text
    assert r.json() == {"m.tz": "Europe/London"}
    r = await http.get(_path(reg["user_id"]))
    assert r.json()["m.tz"] == "Europe/London"


async def test_custom_field_any_json_value(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    key = "com.example.foo"
    for value in ({"nested": {"list": [1, "two", None, True]}}, 42, 1.5, None, [1, 2], "s"):
        r = await _put(http, reg, key, value)
        assert r.status_code == 200, (value, r.text)
        assert r.json() == {}
        r = await http.get(_path(reg["user_id"], key))
        assert r.status_code == 200, (value, r.text)
        assert r.json() == {key: value}
        r = await http.get(_path(reg["user_id"]))
        assert r.status_code == 200, r.text
        assert r.json()[key] == value


async def test_delete_custom_field(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    key = "com.example.foo"
    r = await _put(http, reg, key, {"a": 1})
    assert r.status_code == 200, r.text
    r = await http.delete(_path(reg["user_id"], key), headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = await http.get(_path(reg["user_id"], key))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = await http.get(_path(reg["user_id"]))
    assert key not in r.json()
    # Deleting a field that does not exist is fine (spec: "or it doesn't exist").
    r = await http.delete(_path(reg["user_id"], key), headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text


async def test_delete_displayname(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.delete(_path(reg["user_id"], "displayname"),
                          headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.get(_path(reg["user_id"], "displayname"))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_cannot_change_another_users_profile(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob = await register(http)
    r = await http.put(_path(bob["user_id"], "displayname"), json={"displayname": "pwned"},
                       headers=bearer(alice["access_token"]))
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = await http.delete(_path(bob["user_id"], "displayname"),
                          headers=bearer(alice["access_token"]))
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = await http.get(_path(bob["user_id"], "displayname"))
    assert r.json() == {"displayname": _localpart(bob["user_id"])}


async def test_write_needs_a_token(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.put(_path(reg["user_id"], "displayname"), json={"displayname": "x"})
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    r = await http.delete(_path(reg["user_id"], "displayname"))
    assert r.status_code == 401, r.text
    assert r.json()["errcode"] == "M_MISSING_TOKEN"


async def test_invalid_keys_are_rejected(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    for key in ("Bad Key", "foo", "Com.Example.Foo", "com..example"):
        r = await _put(http, reg, key, 1)
        assert r.status_code == 400, (key, r.text)
        assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON"), (key, r.text)
    r = await http.get(_path(reg["user_id"]))
    assert r.json() == {"displayname": _localpart(reg["user_id"])}


async def test_key_too_large(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    key = "com.example." + "a" * 244
    assert len(key.encode()) == 256
    r = await _put(http, reg, key, 1)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_KEY_TOO_LARGE"
    # Exactly 255 bytes is allowed.
    key = key[:-1]
    r = await _put(http, reg, key, 1)
    assert r.status_code == 200, r.text
    r = await http.get(_path(reg["user_id"], key))
    assert r.json() == {key: 1}


async def test_body_missing_key_is_missing_param(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.put(_path(reg["user_id"], "com.example.foo"), json={"com.example.bar": 1},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_MISSING_PARAM"
    r = await http.put(_path(reg["user_id"], "displayname"), json={},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_MISSING_PARAM"


async def test_profile_too_large(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    big = "x" * 20_000
    for i in range(3):
        r = await _put(http, reg, f"com.example.f{i}", big)
        assert r.status_code == 200, (i, r.text)
    r = await _put(http, reg, "com.example.f3", big)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_PROFILE_TOO_LARGE"
    r = await http.get(_path(reg["user_id"], "com.example.f3"))
    assert r.status_code == 404, r.text
    # Replacing an existing field counts its new size, not old + new.
    r = await _put(http, reg, "com.example.f2", big)
    assert r.status_code == 200, r.text
    r = await http.get(_path(reg["user_id"]))
    assert r.status_code == 200, r.text
    assert sorted(r.json()) == ["com.example.f0", "com.example.f1", "com.example.f2",
                                "displayname"]


async def test_single_field_over_64kib(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await _put(http, reg, "com.example.huge", "y" * 70_000)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_PROFILE_TOO_LARGE"


async def test_displayname_too_long(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await _put(http, reg, "displayname", "n" * 300)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"].startswith("M_")
    r = await http.get(_path(reg["user_id"], "displayname"))
    assert r.json() == {"displayname": _localpart(reg["user_id"])}


async def test_displayname_must_be_string(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    for bad in (5, ["a"], {"a": 1}, True):
        r = await _put(http, reg, "displayname", bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errcode"] == "M_BAD_JSON", (bad, r.text)


async def test_unknown_local_user_is_404(http: httpx.AsyncClient) -> None:
    uid = f"@{unique('ghost')}:localhost"
    r = await http.get(_path(uid))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = await http.get(_path(uid, "displayname"))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_missing_field_of_existing_user_is_404(http: httpx.AsyncClient) -> None:
    reg = await register(http)
    r = await http.get(_path(reg["user_id"], "com.example.nothere"))
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_malformed_user_id_is_400(http: httpx.AsyncClient) -> None:
    for bad in ("notauser", "@nocolon", "@:localhost"):
        r = await http.get(_path(bad))
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON"), (bad, r.text)
    r = await http.get(f"{PROFILE}/notauser/displayname")
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")


async def test_user_id_with_slash_in_localpart(http: httpx.AsyncClient) -> None:
    username = unique("a/b")
    reg = await register(http, username)
    assert reg["user_id"] == f"@{username}:localhost"
    encoded = quote(reg["user_id"], safe="@:")
    assert "%2F" in encoded

    r = await http.get(f"{PROFILE}/{encoded}/displayname")
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": username}
    r = await http.get(f"{PROFILE}/{encoded}")
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": username}

    r = await http.put(f"{PROFILE}/{encoded}/displayname", json={"displayname": "Slashy"},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.get(f"{PROFILE}/{encoded}/displayname")
    assert r.json() == {"displayname": "Slashy"}
    r = await http.put(f"{PROFILE}/{encoded}/com.example.k", json={"com.example.k": [1]},
                       headers=bearer(reg["access_token"]))
    assert r.status_code == 200, r.text
    r = await http.get(f"{PROFILE}/{encoded}")
    assert r.json() == {"displayname": "Slashy", "com.example.k": [1]}

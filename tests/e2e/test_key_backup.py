"""Server-side key backups (spec "Server-side key backups") against a real server: versions,
keys at all three levels, etag and count, the rule for which uploaded key wins, and errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.conftest import ServerFactory
from tests.e2e.helpers import CLIENT, assert_error, bearer, register

VERSION = f"{CLIENT}/room_keys/version"
KEYS = f"{CLIENT}/room_keys/keys"
ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
AUTH_DATA = {"public_key": "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo",
             "signatures": {"@alice:example.org": {"ed25519:DEV": "c2lnbmF0dXJl"}}}
ROOM = "!backup:example.org"
OTHER_ROOM = "!other:example.org"
# Megolm session IDs are unpadded standard base64: '/' and '+' occur.
SESSION = "ZeKX+XzLdEnI/o2Fq0YCNmJSVYe9Fd4pHRPn5oILqmc"


def key(fmi: int = 0, fc: int = 0, verified: bool = False, data: str = "x") -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ephemeral": "eph", "ciphertext": data, "mac": "mac"}}


def keys_path(room_id: str | None = None, session_id: str | None = None) -> str:
    parts = [KEYS]
    if room_id is not None:
        parts.append(quote(room_id, safe=""))
    if session_id is not None:
        parts.append(quote(session_id, safe=""))
    return "/".join(parts)


class Backup:
    """One user's view of the backup API."""

    def __init__(self, http: httpx.AsyncClient, account: dict[str, Any]) -> None:
        self.http = http
        self.user_id: str = account["user_id"]
        self.auth = bearer(account["access_token"])

    @classmethod
    async def new(cls, http: httpx.AsyncClient) -> Backup:
        return cls(http, await register(http))

    async def create(self, auth_data: dict[str, Any] | None = None,
                     algorithm: str = ALGORITHM) -> str:
        r = await self.http.post(VERSION, json={"algorithm": algorithm,
                                                "auth_data": auth_data or AUTH_DATA},
                                 headers=self.auth)
        assert r.status_code == 200, r.text
        version: str = r.json()["version"]
        assert isinstance(version, str)
        return version

    async def info(self, version: str | None = None) -> dict[str, Any]:
        path = VERSION if version is None else f"{VERSION}/{quote(version, safe='')}"
        r = await self.http.get(path, headers=self.auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def request(self, method: str, version: str | None, room_id: str | None = None,
                      session_id: str | None = None, body: Any = None) -> httpx.Response:
        params = {} if version is None else {"version": version}
        return await self.http.request(method, keys_path(room_id, session_id), params=params,
                                       json=body, headers=self.auth)

    async def put(self, version: str, body: Any, room_id: str | None = None,
                  session_id: str | None = None) -> dict[str, Any]:
        r = await self.request("PUT", version, room_id, session_id, body)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        assert set(result) == {"etag", "count"}, result
        assert isinstance(result["etag"], str)
        return result

    async def get(self, version: str, room_id: str | None = None,
                  session_id: str | None = None) -> dict[str, Any]:
        r = await self.request("GET", version, room_id, session_id)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def delete(self, version: str, room_id: str | None = None,
                     session_id: str | None = None) -> dict[str, Any]:
        r = await self.request("DELETE", version, room_id, session_id)
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        assert set(result) == {"etag", "count"}, result
        return result


@pytest.fixture
async def alice(http: httpx.AsyncClient) -> Backup:
    return await Backup.new(http)


# -- versions ---------------------------------------------------------------------------------


async def test_no_backup_is_404(alice: Backup) -> None:
    assert_error(await alice.http.get(VERSION, headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.http.get(f"{VERSION}/1", headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.request("PUT", "1", ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    assert_error(await alice.request("GET", "1"), 404, "M_NOT_FOUND")


async def test_create_and_get_version(alice: Backup) -> None:
    version = await alice.create()
    expected = {"algorithm": ALGORITHM, "auth_data": AUTH_DATA, "count": 0,
                "version": version}
    current = await alice.info()
    etag = current.pop("etag")
    assert isinstance(etag, str)
    assert current == expected
    assert await alice.info(version) == {**expected, "etag": etag}


async def test_new_version_becomes_current_and_only_it_accepts_keys(alice: Backup) -> None:
    v1 = await alice.create({"public_key": "one"})
    await alice.put(v1, key(), ROOM, SESSION)
    v2 = await alice.create({"public_key": "two"})
    assert v2 != v1
    assert (await alice.info())["version"] == v2
    assert (await alice.info())["auth_data"] == {"public_key": "two"}
    # The old version still exists and can be read, but is closed to uploads.
    for path, body in ((keys_path(ROOM, "new"), key()),
                       (keys_path(ROOM), {"sessions": {"new": key()}}),
                       (keys_path(), {"rooms": {ROOM: {"sessions": {"new": key()}}}})):
        r = await alice.http.put(path, params={"version": v1}, json=body, headers=alice.auth)
        error = assert_error(r, 403, "M_WRONG_ROOM_KEYS_VERSION")
        assert error["current_version"] == v2
    old = await alice.info(v1)
    assert old["count"] == 1
    assert old["auth_data"] == {"public_key": "one"}
    assert (await alice.get(v1, ROOM, SESSION)) == key()
    # ...and its keys can still be deleted.
    assert (await alice.delete(v1, ROOM, SESSION))["count"] == 0
    # The new version starts empty and takes uploads.
    assert (await alice.get(v2)) == {"rooms": {}}
    assert (await alice.put(v2, key(), ROOM, SESSION))["count"] == 1


async def test_delete_version(alice: Backup) -> None:
    v1 = await alice.create()
    v2 = await alice.create()
    await alice.put(v2, key(), ROOM, SESSION)
    r = await alice.http.delete(f"{VERSION}/{v2}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    # Gone with its keys, for every endpoint.
    assert_error(await alice.http.get(f"{VERSION}/{v2}", headers=alice.auth), 404, "M_NOT_FOUND")
    for method in ("GET", "DELETE"):
        assert_error(await alice.request(method, v2), 404, "M_NOT_FOUND")
        assert_error(await alice.request(method, v2, ROOM), 404, "M_NOT_FOUND")
        assert_error(await alice.request(method, v2, ROOM, SESSION), 404, "M_NOT_FOUND")
    assert_error(await alice.request("PUT", v2, ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    r = await alice.http.put(f"{VERSION}/{v2}", json={"algorithm": ALGORITHM,
                                                      "auth_data": {}}, headers=alice.auth)
    assert_error(r, 404, "M_NOT_FOUND")
    # Deleting it again succeeds (spec: "If the backup was previously deleted, the call should
    # succeed"); a version that never existed is 404.
    r = await alice.http.delete(f"{VERSION}/{v2}", headers=alice.auth)
    assert r.status_code == 200, r.text
    for unknown in ("999999", "abc", "0", "-1", f"0{v1}"):
        r = await alice.http.delete(f"{VERSION}/{unknown}", headers=alice.auth)
        assert_error(r, 404, "M_NOT_FOUND")
    # The newest remaining version is current again; a new version never reuses a number.
    assert (await alice.info())["version"] == v1
    assert (await alice.put(v1, key(), ROOM, SESSION))["count"] == 1
    v3 = await alice.create()
    assert v3 not in (v1, v2)
    # Deleting the only versions leaves no backup at all.
    for version in (v1, v3):
        assert (await alice.http.delete(f"{VERSION}/{version}", headers=alice.auth)
                ).status_code == 200
    assert_error(await alice.http.get(VERSION, headers=alice.auth), 404, "M_NOT_FOUND")
    assert_error(await alice.request("PUT", v3, ROOM, SESSION, key()), 404, "M_NOT_FOUND")


async def test_update_version_auth_data(alice: Backup) -> None:
    version = await alice.create()
    await alice.put(version, key(), ROOM, SESSION)
    before = await alice.info(version)
    new_auth = {"public_key": "rotated", "signatures": {}}
    for body in ({"algorithm": ALGORITHM, "auth_data": new_auth},
                 {"algorithm": ALGORITHM, "auth_data": new_auth, "version": version}):
        r = await alice.http.put(f"{VERSION}/{version}", json=body, headers=alice.auth)
        assert r.status_code == 200, r.text
        assert r.json() == {}
    # Only auth_data changes: keys, count and etag stay.
    assert await alice.info(version) == {**before, "auth_data": new_auth}
    assert await alice.get(version, ROOM, SESSION) == key()


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        pytest.param({"algorithm": "org.example.other", "auth_data": {}}, 400, "M_INVALID_PARAM",
                     id="algorithm-mismatch"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": {}, "version": "77"}, 400,
                     "M_INVALID_PARAM", id="body-version-mismatch"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": {}, "version": 1}, 400,
                     "M_BAD_JSON", id="body-version-not-string"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": "x"}, 400, "M_BAD_JSON",
                     id="auth-data-string"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": [1]}, 400, "M_BAD_JSON",
                     id="auth-data-list"),
        pytest.param({"algorithm": ALGORITHM}, 400, "M_MISSING_PARAM", id="no-auth-data"),
        pytest.param({"auth_data": {}}, 400, "M_MISSING_PARAM", id="no-algorithm"),
    ],
)
async def test_update_version_errors(alice: Backup, body: dict[str, Any], status: int,
                                     errcode: str) -> None:
    version = await alice.create()
    r = await alice.http.put(f"{VERSION}/{version}", json=body, headers=alice.auth)
    assert_error(r, status, errcode)
    assert (await alice.info(version))["auth_data"] == AUTH_DATA


async def test_update_unknown_version_is_404(alice: Backup) -> None:
    await alice.create()
    for version in ("999999", "nope"):
        r = await alice.http.put(f"{VERSION}/{version}",
                                 json={"algorithm": ALGORITHM, "auth_data": {}},
                                 headers=alice.auth)
        assert_error(r, 404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        pytest.param({"algorithm": ALGORITHM, "auth_data": "abc"}, "M_BAD_JSON",
                     id="auth-data-string"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": ["abc"]}, "M_BAD_JSON",
                     id="auth-data-list"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": None}, "M_BAD_JSON",
                     id="auth-data-null"),
        pytest.param({"algorithm": ALGORITHM, "auth_data": 5}, "M_BAD_JSON",
                     id="auth-data-number"),
        pytest.param({"algorithm": ALGORITHM}, "M_MISSING_PARAM", id="no-auth-data"),
        pytest.param({"auth_data": {}}, "M_MISSING_PARAM", id="no-algorithm"),
        pytest.param({"algorithm": 5, "auth_data": {}}, "M_BAD_JSON", id="algorithm-number"),
        pytest.param({"algorithm": "", "auth_data": {}}, "M_INVALID_PARAM",
                     id="algorithm-empty"),
    ],
)
async def test_create_version_validation(alice: Backup, body: dict[str, Any],
                                         errcode: str) -> None:
    r = await alice.http.post(VERSION, json=body, headers=alice.auth)
    assert_error(r, 400, errcode)
    # Nothing was created.
    assert_error(await alice.http.get(VERSION, headers=alice.auth), 404, "M_NOT_FOUND")


async def test_unknown_version_is_404_everywhere(alice: Backup) -> None:
    await alice.create()
    for version in ("999999", "abc", "", "01"):
        for method in ("GET", "DELETE"):
            for room_id, session_id in ((None, None), (ROOM, None), (ROOM, SESSION)):
                r = await alice.request(method, version, room_id, session_id)
                assert_error(r, 404, "M_NOT_FOUND")
        for room_id, session_id, body in (
                (None, None, {"rooms": {}}), (ROOM, None, {"sessions": {}}),
                (ROOM, SESSION, key())):
            r = await alice.request("PUT", version, room_id, session_id, body)
            assert_error(r, 404, "M_NOT_FOUND")
        r = await alice.http.get(f"{VERSION}/{quote(version, safe='')}", headers=alice.auth)
        if version:  # an empty segment is the current version's endpoint with a slash
            assert_error(r, 404, "M_NOT_FOUND")


async def test_missing_version_param_is_400(alice: Backup) -> None:
    await alice.create()
    for method in ("GET", "DELETE"):
        for room_id, session_id in ((None, None), (ROOM, None), (ROOM, SESSION)):
            r = await alice.request(method, None, room_id, session_id)
            assert_error(r, 400, "M_MISSING_PARAM")
    r = await alice.request("PUT", None, ROOM, SESSION, key())
    assert_error(r, 400, "M_MISSING_PARAM")


# -- keys -------------------------------------------------------------------------------------


async def test_keys_at_every_level(alice: Backup) -> None:
    version = await alice.create()
    assert await alice.get(version) == {"rooms": {}}
    assert await alice.get(version, ROOM) == {"sessions": {}}
    assert_error(await alice.request("GET", version, ROOM, SESSION), 404, "M_NOT_FOUND")

    # PUT /room_keys/keys: several rooms at once.
    r = await alice.put(version, {"rooms": {
        ROOM: {"sessions": {"s1": key(data="1"), "s2": key(data="2")}},
        OTHER_ROOM: {"sessions": {"s1": key(data="o1")}},
    }})
    assert r["count"] == 3
    # PUT /room_keys/keys/{roomId}
    assert (await alice.put(version, {"sessions": {"s3": key(data="3")}}, ROOM))["count"] == 4
    # PUT /room_keys/keys/{roomId}/{sessionId}, with a session ID holding '/' and '+'.
    assert (await alice.put(version, key(data="b64"), ROOM, SESSION))["count"] == 5

    everything = {"rooms": {
        ROOM: {"sessions": {"s1": key(data="1"), "s2": key(data="2"), "s3": key(data="3"),
                            SESSION: key(data="b64")}},
        OTHER_ROOM: {"sessions": {"s1": key(data="o1")}},
    }}
    assert await alice.get(version) == everything
    assert await alice.get(version, ROOM) == everything["rooms"][ROOM]
    assert await alice.get(version, OTHER_ROOM, "s1") == key(data="o1")
    assert await alice.get(version, ROOM, SESSION) == key(data="b64")
    assert (await alice.info(version))["count"] == 5

    # DELETE one session, then a room, then everything.
    r = await alice.delete(version, ROOM, SESSION)
    assert r["count"] == 4
    assert_error(await alice.request("GET", version, ROOM, SESSION), 404, "M_NOT_FOUND")
    r = await alice.delete(version, ROOM)
    assert r["count"] == 1
    assert await alice.get(version, ROOM) == {"sessions": {}}
    assert await alice.get(version) == {"rooms": {OTHER_ROOM: {"sessions": {"s1": key(data="o1")}}}}
    r = await alice.delete(version)
    assert r["count"] == 0
    assert await alice.get(version) == {"rooms": {}}
    assert (await alice.info(version))["count"] == 0


async def test_extra_key_fields_are_not_stored(alice: Backup) -> None:
    version = await alice.create()
    await alice.put(version, {**key(), "unsigned": {"x": 1}}, ROOM, SESSION)
    assert await alice.get(version, ROOM, SESSION) == key()


async def test_etag_changes_only_when_keys_change(alice: Backup) -> None:
    version = await alice.create()
    etags = [(await alice.info(version))["etag"]]

    async def changed(result: dict[str, Any]) -> None:
        assert result["etag"] not in etags, (result, etags)
        assert (await alice.info(version))["etag"] == result["etag"]
        etags.append(result["etag"])

    async def unchanged(result: dict[str, Any]) -> None:
        assert result["etag"] == etags[-1], (result, etags)
        assert (await alice.info(version))["etag"] == etags[-1]

    await changed(await alice.put(version, key(fmi=5), ROOM, SESSION))
    await unchanged(await alice.put(version, key(fmi=5), ROOM, SESSION))  # same key again
    await unchanged(await alice.put(version, key(fmi=9), ROOM, SESSION))  # a losing key
    await unchanged(await alice.put(version, {"sessions": {}}, ROOM))  # nothing at all
    await changed(await alice.put(version, key(fmi=1), ROOM, SESSION))  # a winning key
    await changed(await alice.put(version, key(), ROOM, "another"))  # a new session
    await unchanged(await alice.delete(version, ROOM, "never-stored"))
    await unchanged(await alice.delete(version, OTHER_ROOM))
    await changed(await alice.delete(version, ROOM, "another"))
    await changed(await alice.delete(version))
    await unchanged(await alice.delete(version))
    # auth_data is not part of the etag ("representing stored keys").
    r = await alice.http.put(f"{VERSION}/{version}",
                             json={"algorithm": ALGORITHM, "auth_data": {"public_key": "z"}},
                             headers=alice.auth)
    assert r.status_code == 200, r.text
    assert (await alice.info(version))["etag"] == etags[-1]


# The spec's rule, in order: the verified key wins; then the lower first_message_index; then the
# lower forwarded_count; on a complete tie the stored key stays.
REPLACEMENT_CASES = [
    pytest.param(key(5, 5, False), key(9, 9, True), True, id="verified-beats-unverified"),
    pytest.param(key(9, 9, True), key(0, 0, False), False, id="unverified-never-beats-verified"),
    pytest.param(key(5, 0, False), key(4, 9, False), True, id="lower-fmi-wins-unverified"),
    pytest.param(key(5, 0, True), key(4, 9, True), True, id="lower-fmi-wins-verified"),
    pytest.param(key(4, 9, False), key(5, 0, False), False, id="higher-fmi-loses"),
    pytest.param(key(5, 3, False), key(5, 2, False), True, id="lower-forwarded-count-wins"),
    pytest.param(key(5, 3, True), key(5, 2, True), True, id="lower-fc-wins-verified"),
    pytest.param(key(5, 2, False), key(5, 3, False), False, id="higher-forwarded-count-loses"),
    pytest.param(key(5, 2, False, "old"), key(5, 2, False, "new"), False, id="tie-keeps-stored"),
    pytest.param(key(5, 2, True, "old"), key(5, 2, True, "new"), False,
                 id="verified-tie-keeps-stored"),
]


@pytest.mark.parametrize(("stored", "uploaded", "replaced"), REPLACEMENT_CASES)
async def test_session_replacement_rule(alice: Backup, stored: dict[str, Any],
                                        uploaded: dict[str, Any], replaced: bool) -> None:
    stored = {**stored, "session_data": {"which": "stored"}}
    uploaded = {**uploaded, "session_data": {"which": "uploaded"}}
    version = await alice.create()
    before = await alice.put(version, stored, ROOM, SESSION)
    after = await alice.put(version, uploaded, ROOM, SESSION)
    assert await alice.get(version, ROOM, SESSION) == (uploaded if replaced else stored)
    assert after["count"] == 1
    assert (after["etag"] != before["etag"]) == replaced


async def test_replacement_rule_in_a_batch(alice: Backup) -> None:
    """One upload where some keys win and some lose: each session is judged on its own."""
    version = await alice.create()
    await alice.put(version, {"rooms": {ROOM: {"sessions": {"a": key(5, data="a-old"),
                                                            "b": key(5, data="b-old")}}}})
    r = await alice.put(version, {"rooms": {
        ROOM: {"sessions": {"a": key(1, data="a-new"), "b": key(6, data="b-new"),
                            "c": key(data="c-new")}},
    }})
    assert r["count"] == 3
    sessions = (await alice.get(version, ROOM))["sessions"]
    assert {s: k["session_data"]["ciphertext"] for s, k in sessions.items()} == {
        "a": "a-new", "b": "b-old", "c": "c-new"}


async def test_concurrent_uploads_keep_the_best_key_and_count_every_session(
        alice: Backup) -> None:
    version = await alice.create()
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(alice.put, version, key(fmi=20 - i, data=str(20 - i)), ROOM,
                               "contested")
            nursery.start_soon(alice.put, version, key(data=str(i)), ROOM, f"s{i}")
    assert await alice.get(version, ROOM, "contested") == key(fmi=1, data="1")
    assert (await alice.info(version))["count"] == 21
    assert len((await alice.get(version, ROOM))["sessions"]) == 21


@pytest.mark.parametrize(
    ("room_id", "session_id", "body", "errcode"),
    [
        pytest.param(ROOM, SESSION, {"first_message_index": 0}, "M_MISSING_PARAM",
                     id="key-missing-fields"),
        pytest.param(ROOM, SESSION, {**key(), "is_verified": 1}, "M_BAD_JSON",
                     id="is-verified-not-bool"),
        pytest.param(ROOM, SESSION, {**key(), "first_message_index": "1"}, "M_BAD_JSON",
                     id="fmi-string"),
        pytest.param(ROOM, SESSION, {**key(), "first_message_index": 1.5}, "M_BAD_JSON",
                     id="fmi-float"),
        pytest.param(ROOM, SESSION, {**key(), "forwarded_count": -1}, "M_BAD_JSON",
                     id="fc-negative"),
        pytest.param(ROOM, SESSION, {**key(), "forwarded_count": True}, "M_BAD_JSON",
                     id="fc-bool"),
        pytest.param(ROOM, SESSION, {**key(), "first_message_index": 2**60}, "M_BAD_JSON",
                     id="fmi-huge"),
        pytest.param(ROOM, SESSION, {**key(), "session_data": "opaque"}, "M_BAD_JSON",
                     id="session-data-string"),
        pytest.param(ROOM, SESSION, {k: v for k, v in key().items() if k != "session_data"},
                     "M_MISSING_PARAM", id="no-session-data"),
        pytest.param("not-a-room", SESSION, key(), "M_INVALID_PARAM", id="path-room-id"),
        pytest.param(ROOM, None, {}, "M_MISSING_PARAM", id="room-no-sessions"),
        pytest.param(ROOM, None, {"sessions": []}, "M_BAD_JSON", id="room-sessions-list"),
        pytest.param(ROOM, None, {"sessions": {"s": "k"}}, "M_BAD_JSON", id="room-key-string"),
        pytest.param(ROOM, None, {"sessions": {"": key()}}, "M_INVALID_PARAM",
                     id="room-empty-session-id"),
        pytest.param(None, None, {}, "M_MISSING_PARAM", id="no-rooms"),
        pytest.param(None, None, {"rooms": []}, "M_BAD_JSON", id="rooms-list"),
        pytest.param(None, None, {"rooms": {ROOM: {}}}, "M_MISSING_PARAM",
                     id="rooms-room-no-sessions"),
        pytest.param(None, None, {"rooms": {ROOM: []}}, "M_BAD_JSON", id="rooms-room-list"),
        pytest.param(None, None, {"rooms": {"notaroom": {"sessions": {"s": key()}}}},
                     "M_INVALID_PARAM", id="rooms-bad-room-id"),
        pytest.param(None, None, {"rooms": {ROOM: {"sessions": {"s": {**key(),
                                                                      "is_verified": None}}}}},
                     "M_BAD_JSON", id="rooms-bad-key"),
    ],
)
async def test_invalid_uploads_are_400_and_store_nothing(
        alice: Backup, room_id: str | None, session_id: str | None, body: dict[str, Any],
        errcode: str) -> None:
    version = await alice.create()
    before = await alice.info(version)
    assert_error(await alice.request("PUT", version, room_id, session_id, body), 400, errcode)
    assert await alice.info(version) == before
    assert await alice.get(version) == {"rooms": {}}


async def test_a_batch_with_one_bad_key_stores_none(alice: Backup) -> None:
    version = await alice.create()
    body = {"rooms": {ROOM: {"sessions": {"good": key(), "bad": {**key(), "is_verified": "no"}}},
                      OTHER_ROOM: {"sessions": {"good": key()}}}}
    assert_error(await alice.request("PUT", version, body=body), 400, "M_BAD_JSON")
    assert await alice.get(version) == {"rooms": {}}


async def test_malformed_json_is_rejected(alice: Backup) -> None:
    version = await alice.create()
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("POST", VERSION, {}),
        ("PUT", f"{VERSION}/{version}", {}),
        ("PUT", keys_path(), {"version": version}),
        ("PUT", keys_path(ROOM), {"version": version}),
        ("PUT", keys_path(ROOM, SESSION), {"version": version}),
    ]
    headers = {**alice.auth, "Content-Type": "application/json"}
    for method, path, params in cases:
        for content, errcode in ((b"{not json", "M_NOT_JSON"), (b"", "M_NOT_JSON"),
                                 (b'{"a": NaN}', "M_NOT_JSON"), (b"[]", "M_BAD_JSON"),
                                 (b'"string"', "M_BAD_JSON")):
            r = await alice.http.request(method, path, params=params, content=content,
                                         headers=headers)
            assert_error(r, 400, errcode)
    assert (await alice.info(version))["count"] == 0


async def test_body_over_the_size_limit_is_rejected(server_factory: ServerFactory) -> None:
    srv = server_factory("--open-registration", "--no-rate-limits",
                         config_text="max_request_body_bytes = 2048\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        alice = await Backup.new(http)
        version = await alice.create()
        big = {"rooms": {ROOM: {"sessions": {f"s{i}": key(data="c" * 100) for i in range(30)}}}}
        data = json.dumps(big).encode()
        assert len(data) > 2048
        r = await http.put(keys_path(), params={"version": version}, content=data,
                           headers={**alice.auth, "Content-Type": "application/json"})
        assert_error(r, 413, "M_TOO_LARGE")
        r = await http.post(VERSION, json={"algorithm": ALGORITHM,
                                           "auth_data": {"pad": "p" * 4096}},
                            headers=alice.auth)
        assert_error(r, 413, "M_TOO_LARGE")
        assert (await alice.info(version))["count"] == 0
        # Under the limit, on the same server, all is well.
        assert (await alice.put(version, key(), ROOM, SESSION))["count"] == 1


# -- isolation and authentication ---------------------------------------------------------------


async def test_other_users_backups_are_invisible(http: httpx.AsyncClient) -> None:
    alice, bob = await Backup.new(http), await Backup.new(http)
    va = await alice.create({"public_key": "alice"})
    await alice.put(va, key(data="alice-secret"), ROOM, SESSION)
    # Bob has no backup, whatever Alice has.
    assert_error(await http.get(VERSION, headers=bob.auth), 404, "M_NOT_FOUND")
    assert_error(await http.get(f"{VERSION}/{va}", headers=bob.auth), 404, "M_NOT_FOUND")
    for method in ("GET", "DELETE"):
        assert_error(await bob.request(method, va), 404, "M_NOT_FOUND")
        assert_error(await bob.request(method, va, ROOM), 404, "M_NOT_FOUND")
        assert_error(await bob.request(method, va, ROOM, SESSION), 404, "M_NOT_FOUND")
    assert_error(await bob.request("PUT", va, ROOM, SESSION, key()), 404, "M_NOT_FOUND")
    r = await http.put(f"{VERSION}/{va}", json={"algorithm": ALGORITHM, "auth_data": {}},
                       headers=bob.auth)
    assert_error(r, 404, "M_NOT_FOUND")
    assert_error(await http.delete(f"{VERSION}/{va}", headers=bob.auth), 404, "M_NOT_FOUND")
    # Bob's own backup may carry the same version string; each sees only their own.
    vb = await bob.create({"public_key": "bob"})
    await bob.put(vb, key(data="bob-secret"), ROOM, SESSION)
    await bob.delete(vb)
    assert await bob.get(vb) == {"rooms": {}}
    assert (await alice.info(va))["auth_data"] == {"public_key": "alice"}
    assert await alice.get(va, ROOM, SESSION) == key(data="alice-secret")
    assert (await alice.info(va))["count"] == 1


ENDPOINTS = [
    ("POST", VERSION), ("GET", VERSION), ("GET", f"{VERSION}/1"), ("PUT", f"{VERSION}/1"),
    ("DELETE", f"{VERSION}/1"),
    *((method, path) for method in ("GET", "PUT", "DELETE")
      for path in (keys_path(), keys_path(ROOM), keys_path(ROOM, SESSION))),
]


async def test_every_endpoint_requires_a_token(http: httpx.AsyncClient) -> None:
    assert len(ENDPOINTS) == 14
    for method, path in ENDPOINTS:
        r = await http.request(method, path, params={"version": "1"}, json={})
        assert_error(r, 401, "M_MISSING_TOKEN")
        r = await http.request(method, path, params={"version": "1"}, json={},
                               headers=bearer("not-a-token"))
        assert_error(r, 401, "M_UNKNOWN_TOKEN")


async def test_guests_cannot_use_backups(server_factory: ServerFactory) -> None:
    srv = server_factory(config_text="[registration]\nallow_guests = true\n")
    async with httpx.AsyncClient(base_url=srv.url, timeout=30.0) as http:
        r = await http.post(f"{CLIENT}/register", params={"kind": "guest"}, json={})
        assert r.status_code == 200, r.text
        auth = bearer(r.json()["access_token"])
        for method, path in ENDPOINTS:
            r = await http.request(method, path, params={"version": "1"},
                                   json={"algorithm": ALGORITHM, "auth_data": {}},
                                   headers=auth)
            assert_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")

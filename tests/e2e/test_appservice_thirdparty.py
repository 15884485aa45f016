"""Third-party lookups answered by application services, and their per-network room
directories in /publicRooms (spec "Third-party Networks", "Application Service API")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.cli_process import run_cli
from tests.e2e.fake_appservice import fake_appservice
from tests.e2e.helpers import assert_error, bearer, create_room, register
from tests.server_process import ServerProcess

ServerFactory = Callable[..., ServerProcess]
TP = "/_matrix/client/v3/thirdparty"
AS_PATH = "/_matrix/app/v1/thirdparty"
PUBLIC_ROOMS = "/_matrix/client/v3/publicRooms"


def _registration(tmp_path: Path, name: str, url: str | None, protocols: list[str]) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"id: {name}\nurl: {url or 'null'}\nas_token: as-{name}\nhs_token: hs-{name}\n"
        f"sender_localpart: {name}bot\nprotocols: [{', '.join(protocols)}]\nnamespaces:\n"
        f"  users:\n    - exclusive: true\n      regex: '@{name}_.*'\n"
        "  aliases: []\n  rooms: []\n", encoding="utf-8")
    return str(path)


def _start(server_factory: ServerFactory, registrations: list[str], **kw: Any
           ) -> ServerProcess:
    listed = ", ".join(f'"{r}"' for r in registrations)
    return server_factory("--open-registration", "--no-rate-limits",
                          config_text=f"appservice_registrations = [{listed}]\n", **kw)


def _protocol(desc: str, network: str) -> dict[str, Any]:
    return {"user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://x/y",
            "field_types": {"nick": {"regexp": ".*", "placeholder": "nick"},
                            "channel": {"regexp": "#.*", "placeholder": "#chan"}},
            "instances": [{"desc": desc, "network_id": network, "fields": {"net": network}},
                          "not an instance", {"desc": "no network id", "fields": {}}]}


def _location(alias: str) -> dict[str, Any]:
    return {"alias": alias, "protocol": "irc", "fields": {"channel": "#a"}}


async def test_no_appservices_means_no_protocols(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        auth = bearer(user["access_token"])
        r = await http.get(f"{TP}/protocols", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json() == {}
        assert_error(await http.get(f"{TP}/protocol/irc", headers=auth), 404, "M_NOT_FOUND")
        assert_error(await http.get(f"{TP}/location/irc", headers=auth), 404, "M_NOT_FOUND")
        assert_error(await http.get(f"{TP}/location", params={"alias": "#a:b"}, headers=auth),
                     404, "M_NOT_FOUND")
        assert_error(await http.get(f"{TP}/protocols"), 401, "M_MISSING_TOKEN")


async def test_protocols_merge_instances_and_lookups_pass_fields(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as one, fake_appservice() as two, \
            fake_appservice() as broken:
        one.thirdparty = {
            f"{AS_PATH}/protocol/irc": (200, _protocol("Libera", "libera")),
            f"{AS_PATH}/location/irc": (200, [_location("#one:hs"), {"alias": 5}]),
            f"{AS_PATH}/user/irc": (200, [{"userid": "@one_x:hs", "protocol": "irc",
                                           "fields": {"nick": "x"}}]),
            f"{AS_PATH}/location": (200, [_location("#one:hs")]),
            f"{AS_PATH}/user": (200, [{"userid": "@one_x:hs", "protocol": "irc",
                                       "fields": {"nick": "x"}}]),
        }
        two.thirdparty = {
            f"{AS_PATH}/protocol/irc": (200, _protocol("OFTC", "oftc")),
            f"{AS_PATH}/protocol/gitter": (200, {"instances": "not a list"}),
            f"{AS_PATH}/location/irc": (200, {"not": "a list"}),
        }
        broken.thirdparty = {f"{AS_PATH}/protocol/irc": (500, {}),
                             f"{AS_PATH}/location/irc": (200, b"not json")}
        srv = _start(server_factory, [
            _registration(tmp_path, "one", one.url, ["irc"]),
            _registration(tmp_path, "two", two.url, ["irc", "gitter"]),
            _registration(tmp_path, "broken", broken.url, ["irc"]),
            _registration(tmp_path, "nourl", None, ["irc", "slack"])])
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            auth = bearer((await register(http))["access_token"])
            r = await http.get(f"{TP}/protocols", headers=auth)
            assert r.status_code == 200, r.text
            protocols = r.json()
            assert set(protocols) == {"irc"}  # gitter's metadata was malformed; slack unasked
            irc = protocols["irc"]
            assert irc["user_fields"] == ["nick"]
            assert sorted((i["instance_id"], i["desc"]) for i in irc["instances"]) == [
                ("one|libera", "Libera"), ("two|oftc", "OFTC")]
            r = await http.get(f"{TP}/protocol/irc", headers=auth)
            assert r.status_code == 200, r.text
            assert r.json() == irc
            assert_error(await http.get(f"{TP}/protocol/gitter", headers=auth),
                         404, "M_NOT_FOUND")
            assert_error(await http.get(f"{TP}/protocol/nope", headers=auth), 404, "M_NOT_FOUND")
            assert_error(await http.get(f"{TP}/user/nope", headers=auth), 404, "M_NOT_FOUND")

            r = await http.get(f"{TP}/location/irc", headers=auth,
                               params=[("channel", "#a"), ("server", "x y"), ("server", "z")])
            assert r.status_code == 200, r.text
            assert r.json() == [_location("#one:hs")]
            r = await http.get(f"{TP}/user/irc", params={"nick": "x"}, headers=auth)
            assert r.status_code == 200, r.text
            assert [u["userid"] for u in r.json()] == ["@one_x:hs"]
            r = await http.get(f"{TP}/location", params={"alias": "#one:hs"}, headers=auth)
            assert r.status_code == 200, r.text
            assert r.json() == [_location("#one:hs")]
            r = await http.get(f"{TP}/user", params={"userid": "@one_x:hs"}, headers=auth)
            assert r.status_code == 200, r.text
            assert r.json()[0]["userid"] == "@one_x:hs"
            assert_error(await http.get(f"{TP}/user", headers=auth), 400, "M_MISSING_PARAM")
            # The metadata is cached: asked once per appservice, however many requests.
            asked = [a for a in one.attempts if a.path == f"{AS_PATH}/protocol/irc"]
            assert len(asked) == 1
    lookups = [a for a in one.attempts if a.path.startswith(f"{AS_PATH}/location/irc")]
    assert lookups[0].path == f"{AS_PATH}/location/irc?channel=%23a&server=x+y&server=z"
    assert all(a.authorization == "Bearer hs-one" for a in one.attempts)
    assert all(a.authorization == "Bearer hs-two" for a in two.attempts)
    reverse = [a.path for a in one.attempts if a.path.startswith(f"{AS_PATH}/location?")]
    assert reverse == [f"{AS_PATH}/location?alias=%23one%3Ahs"]


async def test_a_hung_appservice_does_not_hold_the_answer_forever(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    async with fake_appservice() as good, fake_appservice() as hung:
        good.thirdparty = {f"{AS_PATH}/location/irc": (200, [_location("#good:hs")])}
        hung.thirdparty = {f"{AS_PATH}/location/irc": (200, [_location("#hung:hs")])}
        hung.thirdparty_delay_s = 60
        srv = _start(server_factory, [_registration(tmp_path, "good", good.url, ["irc"]),
                                      _registration(tmp_path, "hung", hung.url, ["irc"])])
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            auth = bearer((await register(http))["access_token"])
            r = await http.get(f"{TP}/location/irc", headers=auth)
            assert r.status_code == 200, r.text
            assert r.json() == [_location("#good:hs")]


async def _public_ids(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> set[str]:
    r = await http.post(PUBLIC_ROOMS, json=body, headers=auth)
    assert r.status_code == 200, r.text
    return {c["room_id"] for c in r.json()["chunk"]}


async def test_network_directory_is_separate_filtered_and_persisted(
        tmp_path: Path, server_factory: ServerFactory) -> None:
    data_dir = tmp_path / "hs"
    regs = [_registration(tmp_path, "bridge", None, ["irc"])]
    srv = _start(server_factory, regs, data_dir=data_dir)
    as_auth = bearer("as-bridge")

    def publish(network: str, room_id: str, visibility: str) -> Any:
        return http.put(f"/_matrix/client/v3/directory/list/appservice/{network}/{room_id}",
                        json={"visibility": visibility}, headers=as_auth)

    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        user = await register(http)
        auth = bearer(user["access_token"])
        local = await create_room(http, user["access_token"], preset="public_chat",
                                  visibility="public")
        libera = await create_room(http, user["access_token"], preset="public_chat")
        oftc = await create_room(http, user["access_token"], preset="public_chat")
        for network, room_id in (("libera", libera), ("oftc", oftc), ("oftc", libera)):
            r = await publish(network, room_id, "public")
            assert r.status_code == 200, r.text
        assert_error(await publish("libera", "!unknown:localhost", "public"), 404,
                     "M_NOT_FOUND")
        r = await http.put(f"/_matrix/client/v3/directory/list/appservice/x/{local}",
                           json={"visibility": "public"}, headers=auth)
        assert_error(r, 403, "M_FORBIDDEN")
        # Publishing on a network leaves the room's own directory visibility alone.
        r = await http.get(f"/_matrix/client/v3/directory/list/room/{libera}")
        assert r.json() == {"visibility": "private"}
        r = await publish("oftc", libera, "private")
        assert r.status_code == 200, r.text

    srv.stop()
    srv = _start(server_factory, regs, data_dir=data_dir)
    async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
        assert await _public_ids(http, auth) == {local}
        assert await _public_ids(http, auth, third_party_instance_id="bridge|libera") == {libera}
        assert await _public_ids(http, auth, third_party_instance_id="bridge|oftc") == {oftc}
        assert await _public_ids(http, auth, third_party_instance_id="other|oftc") == set()
        assert await _public_ids(http, auth, include_all_networks=True) == {local, libera, oftc}
        assert await _public_ids(http, auth, include_all_networks=True,
                                 third_party_instance_id="bridge|oftc") == {local, libera, oftc}
        r = await http.get(PUBLIC_ROOMS, params={"third_party_instance_id": "bridge|libera"})
        assert {c["room_id"] for c in r.json()["chunk"]} == {libera}
        r = await http.get(PUBLIC_ROOMS)
        assert {c["room_id"] for c in r.json()["chunk"]} == {local}
        r = await http.post(PUBLIC_ROOMS, json={"third_party_instance_id": "nobar"},
                            headers=auth)
        assert_error(r, 400, "M_INVALID_PARAM")
        # An admin deleting a room takes it off the network lists too.
        admin = await register(http)
        made = await run_cli("make-admin", admin["user_id"], "--data-dir", srv.data_dir)
        assert made.returncode == 0, made.stderr
        r = await http.request("DELETE", f"/_synapse/admin/v1/rooms/{libera}", json={},
                               headers=bearer(admin["access_token"]))
        assert r.status_code == 200, r.text
        assert await _public_ids(http, auth, third_party_instance_id="bridge|libera") == set()

"""Receipts, read markers, push rules and /notifications against a real server: what they
answer and refuse, and how receipts and rules change the notifications (delivery of receipts
and counts through /sync is tested on the stream sources)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.helpers import (
    CLIENT,
    assert_error,
    bearer,
    create_room,
    register,
    room_path,
    send_text,
    two_users_in_a_room,
    unique,
)

SPEC_OVERRIDE = [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
                 ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.is_room_mention",
                 ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
                 ".m.rule.suppress_edits"]
SPEC_UNDERRIDE = [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                  ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"]


def rule_path(kind: str, rule_id: str, *rest: str) -> str:
    return "/".join([f"{CLIENT}/pushrules/global/{kind}/{quote(rule_id, safe='')}", *rest])


def user_path(user_id: str, *parts: str) -> str:
    return "/".join([f"{CLIENT}/user/{quote(user_id, safe='')}",
                     *(quote(p, safe="") for p in parts)])


async def receipt(http: httpx.AsyncClient, token: str, room_id: str, event_id: str,
                  receipt_type: str = "m.read", body: Any = None) -> httpx.Response:
    return await http.post(room_path(room_id, "receipt", receipt_type, event_id),
                           json={} if body is None else body, headers=bearer(token))


async def notifications(http: httpx.AsyncClient, token: str, **params: Any
                        ) -> dict[str, Any]:
    r = await http.get(f"{CLIENT}/notifications", params=params, headers=bearer(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def send(http: httpx.AsyncClient, token: str, room_id: str, content: dict[str, Any],
               event_type: str = "m.room.message") -> str:
    r = await http.put(room_path(room_id, "send", event_type, unique("txn")), json=content,
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


# -- receipts --------------------------------------------------------------------------------


async def test_receipt_is_accepted_for_a_joined_member(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    event_id = await send_text(http, alice["access_token"], room_id, "hello")
    for receipt_type in ("m.read", "m.read.private"):
        r = await receipt(http, bob["access_token"], room_id, event_id, receipt_type)
        assert r.status_code == 200, r.text
        assert r.json() == {}
    # The body may be omitted entirely.
    r = await http.post(room_path(room_id, "receipt", "m.read", event_id),
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text


async def test_receipt_refusals(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    stranger = await register(http)
    event_id = await send_text(http, alice["access_token"], room_id, "hello")
    other_room = await create_room(http, alice["access_token"])
    elsewhere = await send_text(http, alice["access_token"], other_room, "elsewhere")
    token = bob["access_token"]
    assert_error(await receipt(http, stranger["access_token"], room_id, event_id), 403,
                 "M_FORBIDDEN")
    assert_error(await receipt(http, token, room_id, "$nope"), 404, "M_NOT_FOUND")
    assert_error(await receipt(http, token, room_id, elsewhere), 404, "M_NOT_FOUND")
    assert_error(await receipt(http, token, "!unknown:localhost", event_id), 404,
                 "M_NOT_FOUND")
    assert_error(await receipt(http, token, room_id, event_id, "m.seen"), 400,
                 "M_INVALID_PARAM")
    for bad in ("", 5, "thread", ["main"]):
        assert_error(await receipt(http, token, room_id, event_id, body={"thread_id": bad}),
                     400, "M_INVALID_PARAM")
    assert_error(await receipt(http, token, room_id, event_id, "m.fully_read",
                               body={"thread_id": "main"}), 400, "M_INVALID_PARAM")


async def test_threaded_receipts_must_match_the_events_thread(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    root = await send_text(http, alice["access_token"], room_id, "root")
    in_thread = await send(http, alice["access_token"], room_id, {
        "msgtype": "m.text", "body": "reply",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    main = await send_text(http, alice["access_token"], room_id, "main again")
    token = bob["access_token"]
    ok = [(in_thread, root), (root, root), (root, "main"), (main, "main")]
    for event_id, thread in ok:
        r = await receipt(http, token, room_id, event_id, body={"thread_id": thread})
        assert r.status_code == 200, (event_id, thread, r.text)
    for event_id, thread in ((in_thread, "main"), (main, root)):
        assert_error(await receipt(http, token, room_id, event_id, body={"thread_id": thread}),
                     400, "M_INVALID_PARAM")


# -- read markers ----------------------------------------------------------------------------


async def fully_read(http: httpx.AsyncClient, user: dict[str, Any], room_id: str
                     ) -> httpx.Response:
    return await http.get(user_path(user["user_id"], "rooms", room_id, "account_data",
                                    "m.fully_read"), headers=bearer(user["access_token"]))


async def test_read_markers_set_the_fully_read_account_data(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    first = await send_text(http, alice["access_token"], room_id, "one")
    second = await send_text(http, alice["access_token"], room_id, "two")
    r = await http.post(room_path(room_id, "read_markers"),
                        json={"m.fully_read": first, "m.read": first, "m.read.private": first},
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    assert (await fully_read(http, bob, room_id)).json() == {"event_id": first}
    # The receipt endpoint with m.fully_read does the same.
    r = await receipt(http, bob["access_token"], room_id, second, "m.fully_read")
    assert r.status_code == 200, r.text
    assert (await fully_read(http, bob, room_id)).json() == {"event_id": second}
    # The marker never moves backwards: an earlier event is accepted and ignored.
    r = await http.post(room_path(room_id, "read_markers"), json={"m.fully_read": first},
                        headers=bearer(bob["access_token"]))
    assert r.status_code == 200, r.text
    assert (await fully_read(http, bob, room_id)).json() == {"event_id": second}
    # Clients cannot set it directly.
    r = await http.put(user_path(bob["user_id"], "rooms", room_id, "account_data",
                                 "m.fully_read"), json={"event_id": first},
                       headers=bearer(bob["access_token"]))
    assert r.status_code == 405, r.text


async def test_read_markers_refusals(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    stranger = await register(http)
    event_id = await send_text(http, alice["access_token"], room_id, "one")
    path = room_path(room_id, "read_markers")
    assert_error(await http.post(path, json={"m.fully_read": event_id},
                                 headers=bearer(stranger["access_token"])), 403, "M_FORBIDDEN")
    assert_error(await http.post(path, json={"m.fully_read": 12},
                                 headers=bearer(bob["access_token"])), 400, "M_INVALID_PARAM")
    assert_error(await http.post(path, json={"m.read": "$missing"},
                                 headers=bearer(bob["access_token"])), 404, "M_NOT_FOUND")
    assert_error(await http.post(path, content=b"[]", headers=bearer(bob["access_token"])),
                 400, "M_BAD_JSON")
    assert (await fully_read(http, bob, room_id)).status_code == 404


# -- push rules ------------------------------------------------------------------------------


async def test_default_push_rules_are_the_spec_list(http: httpx.AsyncClient) -> None:
    me = await register(http)
    r = await http.get(f"{CLIENT}/pushrules/", headers=bearer(me["access_token"]))
    assert r.status_code == 200, r.text
    ruleset = r.json()["global"]
    assert set(ruleset) == {"override", "content", "room", "sender", "underride"}
    assert [x["rule_id"] for x in ruleset["override"]] == SPEC_OVERRIDE
    assert [x["rule_id"] for x in ruleset["underride"]] == SPEC_UNDERRIDE
    assert ruleset["content"] == ruleset["room"] == ruleset["sender"] == []
    by_id = {x["rule_id"]: x for x in ruleset["override"] + ruleset["underride"]}
    assert all(x["default"] for x in by_id.values())
    assert by_id[".m.rule.master"]["enabled"] is False
    assert {"kind": "event_match", "key": "state_key", "pattern": me["user_id"]} in \
        by_id[".m.rule.invite_for_me"]["conditions"]
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
         "value": me["user_id"]}]
    for path in ("/pushrules/global/", "/pushrules/global"):
        r = await http.get(CLIENT + path, headers=bearer(me["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json() == ruleset
    r = await http.get(f"{CLIENT}/pushrules", headers=bearer(me["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"global": ruleset}
    r = await http.get(rule_path("underride", ".m.rule.call"), headers=bearer(me["access_token"]))
    assert r.json() == by_id[".m.rule.call"]
    assert_error(await http.get(rule_path("underride", ".m.rule.master"),
                                headers=bearer(me["access_token"])), 404, "M_NOT_FOUND")


async def test_user_rules_are_created_placed_and_deleted(http: httpx.AsyncClient) -> None:
    me = await register(http)
    auth = bearer(me["access_token"])
    r = await http.put(rule_path("content", "cake"),
                       json={"pattern": "cake", "actions": ["notify", "dont_notify"]},
                       headers=auth)
    assert r.status_code == 200, r.text
    assert (await http.get(rule_path("content", "cake"), headers=auth)).json() == {
        "rule_id": "cake", "pattern": "cake", "actions": ["notify"], "enabled": True,
        "default": False}
    # New rules go first; before/after place them next to another user rule.
    for rule_id, params in (("pie", {}), ("tart", {"after": "cake"}),
                            ("bun", {"before": "cake", "after": "pie"})):
        r = await http.put(rule_path("content", rule_id), params=params,
                           json={"pattern": rule_id, "actions": []}, headers=auth)
        assert r.status_code == 200, r.text
    content = (await http.get(f"{CLIENT}/pushrules/global/", headers=auth)).json()["content"]
    assert [x["rule_id"] for x in content] == ["pie", "bun", "cake", "tart"]
    # Updating keeps the place (and whether it is enabled) unless told otherwise.
    assert (await http.put(rule_path("content", "tart", "enabled"), json={"enabled": False},
                           headers=auth)).status_code == 200
    r = await http.put(rule_path("content", "tart"), json={"pattern": "tarte", "actions": []},
                       headers=auth)
    assert r.status_code == 200, r.text
    content = (await http.get(f"{CLIENT}/pushrules/global/", headers=auth)).json()["content"]
    assert [x["rule_id"] for x in content] == ["pie", "bun", "cake", "tart"]
    assert content[3] == {"rule_id": "tart", "pattern": "tarte", "actions": [],
                          "enabled": False, "default": False}
    r = await http.put(rule_path("content", "tart"), params={"before": "pie"},
                       json={"pattern": "tarte", "actions": []}, headers=auth)
    content = (await http.get(f"{CLIENT}/pushrules/global/", headers=auth)).json()["content"]
    assert [x["rule_id"] for x in content] == ["tart", "pie", "bun", "cake"]
    # Override user rules come after .m.rule.master and before the other defaults.
    r = await http.put(rule_path("override", "quiet"), json={
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "shh"}],
        "actions": []}, headers=auth)
    assert r.status_code == 200, r.text
    override = (await http.get(f"{CLIENT}/pushrules/global/", headers=auth)).json()["override"]
    assert [x["rule_id"] for x in override][:3] == [".m.rule.master", "quiet",
                                                    ".m.rule.suppress_notices"]
    assert (await http.delete(rule_path("content", "bun"), headers=auth)).status_code == 200
    assert_error(await http.get(rule_path("content", "bun"), headers=auth), 404, "M_NOT_FOUND")
    assert_error(await http.delete(rule_path("content", "bun"), headers=auth), 404,
                 "M_NOT_FOUND")
    # Room and sender rules: the rule ID says what they match.
    room = "!somewhere:localhost"
    r = await http.put(rule_path("room", room), json={"actions": []}, headers=auth)
    assert r.status_code == 200, r.text
    assert (await http.get(rule_path("room", room), headers=auth)).json() == {
        "rule_id": room, "actions": [], "enabled": True, "default": False}


async def test_push_rule_refusals(http: httpx.AsyncClient) -> None:
    me = await register(http)
    auth = bearer(me["access_token"])
    ok = {"pattern": "x", "actions": ["notify"]}
    assert (await http.put(rule_path("content", "mine"), json=ok, headers=auth)).status_code \
        == 200
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], int, str]] = [
        ("content", ".m.rule.mine", ok, {}, 400, "M_INVALID_PARAM"),
        ("content", ".m.rule.contains_user_name", ok, {}, 400, "M_INVALID_PARAM"),
        ("content", "a\\b", ok, {}, 400, "M_INVALID_PARAM"),
        ("nonsense", "x", ok, {}, 400, "M_INVALID_PARAM"),
        ("content", "x", {"pattern": "x"}, {}, 400, "M_MISSING_PARAM"),
        ("content", "x", {"actions": []}, {}, 400, "M_MISSING_PARAM"),
        ("content", "x", {"pattern": "x", "actions": "notify"}, {}, 400, "M_BAD_JSON"),
        ("content", "x", {"pattern": "x", "actions": ["explode"]}, {}, 400, "M_INVALID_PARAM"),
        ("content", "x", {"pattern": "x", "actions": [{"value": 1}]}, {}, 400,
         "M_INVALID_PARAM"),
        ("override", "x", {"actions": [], "conditions": [{"key": "type"}]}, {}, 400,
         "M_BAD_JSON"),
        ("content", "x", ok, {"before": "nope"}, 400, "M_UNKNOWN"),
        ("content", "x", ok, {"after": ".m.rule.contains_user_name"}, 400, "M_UNKNOWN"),
        ("room", "not-a-room", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
        ("sender", "not-a-user", {"actions": []}, {}, 400, "M_INVALID_PARAM"),
    ]
    for kind, rule_id, body, params, status, errcode in cases:
        r = await http.put(rule_path(kind, rule_id), json=body, params=params, headers=auth)
        assert_error(r, status, errcode)
    # Nothing of the refused requests was stored.
    content = (await http.get(f"{CLIENT}/pushrules/global/", headers=auth)).json()["content"]
    assert [x["rule_id"] for x in content] == ["mine"]
    assert_error(await http.delete(rule_path("override", ".m.rule.master"), headers=auth), 400,
                 "M_INVALID_PARAM")
    for suffix in ("", "enabled", "actions"):
        path = rule_path("override", "missing", suffix) if suffix else \
            rule_path("override", "missing")
        assert_error(await http.get(path, headers=auth), 404, "M_NOT_FOUND")
    assert_error(await http.put(rule_path("override", "missing", "enabled"),
                                json={"enabled": True}, headers=auth), 404, "M_NOT_FOUND")
    assert_error(await http.put(rule_path("override", "missing", "actions"),
                                json={"actions": []}, headers=auth), 404, "M_NOT_FOUND")
    assert_error(await http.put(rule_path("content", "mine", "enabled"), json={"enabled": "no"},
                                headers=auth), 400, "M_BAD_JSON")
    assert_error(await http.put(rule_path("content", "mine", "enabled"), json={},
                                headers=auth), 400, "M_MISSING_PARAM")
    assert_error(await http.put(rule_path("content", "mine", "actions"), json={},
                                headers=auth), 400, "M_MISSING_PARAM")
    assert_error(await http.get(f"{CLIENT}/pushrules/"), 401, "M_MISSING_TOKEN")


async def test_predefined_rules_can_be_toggled_and_given_actions(
        http: httpx.AsyncClient) -> None:
    me = await register(http)
    auth = bearer(me["access_token"])
    path = rule_path("underride", ".m.rule.message")
    assert (await http.get(path + "/enabled", headers=auth)).json() == {"enabled": True}
    assert (await http.put(path + "/enabled", json={"enabled": False}, headers=auth)
            ).status_code == 200
    assert (await http.get(path + "/enabled", headers=auth)).json() == {"enabled": False}
    actions = ["notify", {"set_tweak": "sound", "value": "bing"}]
    assert (await http.put(path + "/actions", json={"actions": actions}, headers=auth)
            ).status_code == 200
    assert (await http.get(path + "/actions", headers=auth)).json() == {"actions": actions}
    rule = (await http.get(path, headers=auth)).json()
    assert rule["enabled"] is False
    assert rule["default"] is True
    assert rule["actions"] == actions
    # The change is published as the m.push_rules account data.
    r = await http.get(user_path(me["user_id"], "account_data", "m.push_rules"), headers=auth)
    assert r.status_code == 200, r.text
    underride = {x["rule_id"]: x for x in r.json()["global"]["underride"]}
    assert underride[".m.rule.message"]["actions"] == actions
    # Another user's rules are untouched.
    other = await register(http)
    r = await http.get(path, headers=bearer(other["access_token"]))
    assert r.json()["enabled"] is True


# -- notifications ---------------------------------------------------------------------------


async def test_notifications_list_and_read_flags(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    first = await send_text(http, bob["access_token"], room_id, "one")
    second = await send_text(http, bob["access_token"], room_id, "two")
    mention = await send(http, bob["access_token"], room_id, {
        "msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [alice["user_id"]]}})
    await send_text(http, alice["access_token"], room_id, "my own message does not notify me")
    listed = (await notifications(http, alice["access_token"]))["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [mention, second, first]
    assert all(n["room_id"] == room_id and not n["read"] and isinstance(n["ts"], int)
               for n in listed)
    assert "room_id" not in listed[0]["event"]
    assert listed[0]["event"]["content"]["body"] == "hey"
    assert listed[0]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"},
                                    {"set_tweak": "highlight"}]
    # A two-person room: .m.rule.room_one_to_one.
    assert listed[1]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
    highlights = (await notifications(http, alice["access_token"], only="highlight"))
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [mention]
    # Pagination, newest first.
    page = await notifications(http, alice["access_token"], limit=2)
    assert [n["event"]["event_id"] for n in page["notifications"]] == [mention, second]
    rest = await notifications(http, alice["access_token"], limit=2, **{"from": page["next_token"]})
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [first]
    assert "next_token" not in rest
    # A receipt marks everything up to its event read; an older one never takes that back.
    assert (await receipt(http, alice["access_token"], room_id, second)).status_code == 200
    assert (await receipt(http, alice["access_token"], room_id, first)).status_code == 200
    listed = (await notifications(http, alice["access_token"]))["notifications"]
    assert [n["read"] for n in listed] == [False, True, True]
    # A private receipt counts too.
    assert (await receipt(http, alice["access_token"], room_id, mention, "m.read.private")
            ).status_code == 200
    listed = (await notifications(http, alice["access_token"]))["notifications"]
    assert [n["read"] for n in listed] == [True, True, True]
    # Bob was never notified of his own messages.
    assert (await notifications(http, bob["access_token"]))["notifications"][0]["event"][
        "content"]["body"] == "my own message does not notify me"
    assert_error(await http.get(f"{CLIENT}/notifications", params={"from": "abc"},
                                headers=bearer(alice["access_token"])), 400, "M_INVALID_PARAM")


async def test_rules_decide_what_notifies(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    auth = bearer(alice["access_token"])
    # Notices are suppressed; reactions and edits too.
    await send(http, bob["access_token"], room_id, {"msgtype": "m.notice", "body": "beep"})
    target = await send_text(http, bob["access_token"], room_id, "target")
    await send(http, bob["access_token"], room_id, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": target, "key": "+1"}}, "m.reaction")
    await send(http, bob["access_token"], room_id, {
        "msgtype": "m.text", "body": "* edit", "m.new_content": {"msgtype": "m.text",
                                                                  "body": "edit"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target}})
    listed = (await notifications(http, alice["access_token"]))["notifications"]
    assert [n["event"]["event_id"] for n in listed] == [target]
    # A sender rule silences Bob; the master rule silences everything.
    r = await http.put(rule_path("sender", bob["user_id"]), json={"actions": []}, headers=auth)
    assert r.status_code == 200, r.text
    await send_text(http, bob["access_token"], room_id, "muted")
    assert len((await notifications(http, alice["access_token"]))["notifications"]) == 1
    assert (await http.delete(rule_path("sender", bob["user_id"]), headers=auth)
            ).status_code == 200
    loud = await send_text(http, bob["access_token"], room_id, "loud")
    assert (await notifications(http, alice["access_token"]))["notifications"][0]["event"][
        "event_id"] == loud
    assert (await http.put(rule_path("override", ".m.rule.master", "enabled"),
                           json={"enabled": True}, headers=auth)).status_code == 200
    await send_text(http, bob["access_token"], room_id, "nothing gets through")
    assert (await notifications(http, alice["access_token"]))["notifications"][0]["event"][
        "event_id"] == loud


async def test_invites_and_room_mentions_notify(http: httpx.AsyncClient) -> None:
    alice, bob, room_id = await two_users_in_a_room(http)
    carol = await register(http)
    r = await http.post(room_path(room_id, "invite"), json={"user_id": carol["user_id"]},
                        headers=bearer(alice["access_token"]))
    assert r.status_code == 200, r.text
    listed = (await notifications(http, carol["access_token"]))["notifications"]
    assert len(listed) == 1
    assert listed[0]["event"]["type"] == "m.room.member"
    assert listed[0]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]
    # @room: only from senders with the power to (notifications.room defaults to 50).
    await send(http, bob["access_token"], room_id, {"msgtype": "m.text", "body": "all!",
                                                   "m.mentions": {"room": True}})
    room_mention = await send(http, alice["access_token"], room_id, {
        "msgtype": "m.text", "body": "all!", "m.mentions": {"room": True}})
    highlights = (await notifications(http, bob["access_token"], only="highlight"))
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [room_mention]
    listed = (await notifications(http, alice["access_token"], only="highlight"))
    assert listed["notifications"] == []

"""The pure parts of third-party lookups: validating and merging what appservices answer."""

from __future__ import annotations

import pytest

from trioserver.errors import MatrixError
from trioserver.services.appservice.thirdparty import (
    merge_protocols,
    query_fields,
    valid_protocol,
    valid_results,
)
from trioserver.services.rooms.directory import network_selection, parse_instance_id


def test_protocol_instances_get_ids_and_malformed_ones_are_dropped() -> None:
    info = valid_protocol("as1", {"icon": "i", "instances": [
        {"desc": "A", "network_id": "a", "fields": {}}, {"desc": "B"}, 3,
        {"desc": "C", "network_id": "c", "fields": "no"}]})
    assert info == {"icon": "i", "instances": [
        {"desc": "A", "network_id": "a", "fields": {}, "instance_id": "as1|a"}]}
    assert valid_protocol("as1", {"icon": "i"}) is None
    assert valid_protocol("as1", [1]) is None


def test_merge_keeps_the_first_fields_and_all_instances() -> None:
    a = {"icon": "a", "instances": [{"instance_id": "1"}]}
    b = {"icon": "b", "instances": [{"instance_id": "2"}]}
    assert merge_protocols([a, b]) == {"icon": "a",
                                       "instances": [{"instance_id": "1"}, {"instance_id": "2"}]}
    assert merge_protocols([]) is None


def test_results_need_key_protocol_and_fields() -> None:
    good = {"alias": "#a:b", "protocol": "irc", "fields": {}}
    assert valid_results("location", [good, {"alias": "#a:b", "protocol": "irc"},
                                      {"userid": "@u:b", "protocol": "irc", "fields": {}}]) == [
        good]
    assert valid_results("user", {"userid": "@u:b"}) == []


def test_query_fields_drop_the_access_token() -> None:
    assert query_fields({"access_token": ["t"], "a": ["1", "2"]}) == [("a", "1"), ("a", "2")]


def test_instance_ids() -> None:
    assert parse_instance_id("as|net") == ("as", "net")
    for bad in ("asnet", "|net", "as|", "a|b|c"):
        with pytest.raises(MatrixError):
            parse_instance_id(bad)
    assert network_selection(None, False) == (None, False)
    assert network_selection("as|net", False) == (("as", "net"), False)
    assert network_selection("as|net", True) == (None, True)

"""Pure parts of the unstable e2ee transaction extensions: which keys a registration gets."""

from __future__ import annotations

from typing import Any

import pytest

from trioserver.services.appservice import e2ee_extensions as ext
from trioserver.services.appservice.registration import RegistrationError, parse_registration


def _reg(**flags: Any) -> Any:
    return parse_registration({
        "id": "b", "url": None, "as_token": "a", "hs_token": "h", "sender_localpart": "bot",
        "namespaces": {}, **flags})


@pytest.mark.parametrize(("flags", "keys"), [
    ({}, ()),
    ({"receive_ephemeral": True}, ("ephemeral",)),
    ({"de.sorunome.msc2409.push_ephemeral": True}, ("de.sorunome.msc2409.ephemeral",)),
    ({"receive_ephemeral": True, "de.sorunome.msc2409.push_ephemeral": True},
     ("ephemeral", "de.sorunome.msc2409.ephemeral")),
    ({"receive_ephemeral": False}, ()),
])
def test_ephemeral_keys_follow_the_flag_used(flags: dict[str, Any],
                                             keys: tuple[str, ...]) -> None:
    reg = _reg(**flags)
    assert reg.ephemeral_keys == keys
    assert reg.receive_ephemeral == bool(keys)


def test_msc3202_flag_must_be_a_boolean() -> None:
    assert _reg(**{"org.matrix.msc3202": True}).msc3202
    assert not _reg().msc3202
    with pytest.raises(RegistrationError, match=r"org\.matrix\.msc3202"):
        _reg(**{"org.matrix.msc3202": "yes"})


def test_body_keys_as_synapse_sends_them() -> None:
    counts = {"@b_1:hs": {"D": {"signed_curve25519": 3}}}
    data = ext.Extensions(to_device=[], changed=["@x:hs"], otk_counts=counts,
                          fallback_types={"@b_1:hs": {"D": []}})
    body: dict[str, Any] = {}
    data.add_to(body, _reg())
    assert body == {}  # neither ephemeral nor MSC3202: nothing
    data.add_to(body, _reg(receive_ephemeral=True))
    assert body == {ext.TO_DEVICE_KEY: []}  # always present when ephemeral is on
    body = {}
    data.add_to(body, _reg(**{"org.matrix.msc3202": True}))
    assert body == {
        "org.matrix.msc3202.device_one_time_key_counts": counts,
        "org.matrix.msc3202.device_one_time_keys_count": counts,
        "org.matrix.msc3202.device_unused_fallback_key_types": {"@b_1:hs": {"D": []}},
        "org.matrix.msc3202.device_lists": {"changed": ["@x:hs"], "left": []},
    }
    body = {}
    ext.Extensions().add_to(body, _reg(**{"org.matrix.msc3202": True}))
    assert body == {}  # empty parts are left out


def test_scan_stops_at_the_limit_and_skips_uninteresting_rows() -> None:
    rows = [(i, "@b_x:hs" if i % 3 == 0 else "@other:hs") for i in range(1, 50)]

    def after(pos: int) -> list[tuple[int, str]]:
        return [r for r in rows if r[0] > pos][:ext.SCAN_BATCH]

    found, upto, more = ext._scan(after, 0, 2, lambda u: u.startswith("@b_"))
    assert found == [(3, "@b_x:hs"), (6, "@b_x:hs")]
    assert (upto, more) == (6, True)
    found, upto, more = ext._scan(after, 0, 100, lambda _u: False)
    assert (found, upto, more) == ([], 49, False)  # skipped to the end

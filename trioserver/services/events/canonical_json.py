"""Canonical JSON (spec appendix "Canonical JSON"): the bytes that are hashed and signed."""

from __future__ import annotations

from typing import Any

from canonicaljson import encode_canonical_json

MAX_SAFE_INTEGER = 2**53 - 1


class InvalidCanonicalJson(ValueError):
    """The value cannot be canonical JSON in a strict room version (float or huge integer)."""


def encode(value: Any) -> bytes:
    return encode_canonical_json(value)


def check_strict(value: Any, path: str = "") -> None:
    """Room versions 6+: integers within +-(2**53 - 1), no floats (NaN/Infinity never)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InvalidCanonicalJson(f"{path or 'value'}: integer out of range")
        return
    if isinstance(value, float):
        raise InvalidCanonicalJson(f"{path or 'value'}: floats are not allowed")
    if isinstance(value, dict):
        for k, v in value.items():
            check_strict(v, f"{path}.{k}" if path else str(k))
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_strict(v, f"{path}[{i}]")
        return
    raise InvalidCanonicalJson(f"{path or 'value'}: not a JSON value")

"""The [federation] configuration section."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tls_certs import make_cert
from trioserver.config import ALL_ADDRESSES, ConfigError, Federation, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    fed = load(environ={}).federation
    assert fed == Federation()
    assert fed.enabled is True
    assert fed.trusted_key_servers == ("matrix.org",)
    assert fed.allow_private_addresses == ()
    assert fed.insecure_skip_verify is False
    assert fed.listen == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", ALL_ADDRESSES), ("false", ()),
     ('["127.0.0.0/8", "::1"]', ("127.0.0.0/8", "::1"))],
)
def test_allow_private_addresses(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    config = load(write(tmp_path, f"[federation]\nallow_private_addresses = {value}\n"),
                  environ={})
    assert config.federation.allow_private_addresses == expected


def test_a_full_section(tmp_path: Path) -> None:
    certs = make_cert(tmp_path / "ca")
    config = load(write(tmp_path, f"""
[federation]
enabled = false
trusted_key_servers = []
ca_file = "{certs.cert}"
insecure_skip_verify = true
listen = "0.0.0.0:8448"
request_timeout_s = 30
connect_timeout_s = 5
key_request_timeout_s = 3.5
"""), environ={})
    fed = config.federation
    assert (fed.enabled, fed.trusted_key_servers, fed.ca_file, fed.insecure_skip_verify) == (
        False, (), str(certs.cert), True)
    assert (fed.listen, fed.request_timeout_s, fed.connect_timeout_s,
            fed.key_request_timeout_s) == ("0.0.0.0:8448", 30.0, 5.0, 3.5)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("allow_private_addresses = 'yes'", "federation.allow_private_addresses"),
        ("allow_private_addresses = ['10.0.0.0/33']", "federation.allow_private_addresses"),
        ("trusted_key_servers = ['not a name']", "federation.trusted_key_servers"),
        ("listen = '8448'", "federation.listen"),
        ("ca_file = '/nonexistent/ca.pem'", "federation.ca_file"),
        ("request_timeout_s = 0", "federation.request_timeout_s"),
        ("enabled = 'no'", "federation.enabled"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, f"[federation]\n{text}\n"), environ={})
    assert str(info.value).startswith(f"{where}: ")


def test_ca_file_that_is_not_pem(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"federation\.ca_file"):
        load(write(tmp_path, f"[federation]\nca_file = '{tmp_path / 'junk.pem'}'\n"), environ={})

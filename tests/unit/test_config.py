"""Configuration: defaults < TOML file < environment < overrides, validation, sample config."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from trioserver.config import (
    Config,
    ConfigError,
    RateLimit,
    load,
    sample_config,
    split_listen,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trioserver.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load(environ={})
    assert config == Config()
    assert config.server_name == "localhost"
    assert config.data_dir == Path("./data")
    assert config.database_path == Path("data/trioserver.db")
    assert config.listen == "127.0.0.1:8008"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8008)
    assert config.base_url() == "http://127.0.0.1:8008"
    assert config.base_url(9999) == "http://127.0.0.1:9999"
    assert config.registration.open is False
    assert config.registration.tokens == ()
    assert config.rate_limits.enabled is True
    assert config.rate_limits.login_per_address == RateLimit(per_second=0.5, burst=10)
    assert config.database.synchronous == "full"


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server_name = "example.org"
data_dir = "/var/lib/trioserver"
listen = "[::1]:8448"
public_baseurl = "https://matrix.example.org/"

[registration]
open = true
tokens = ["abc", "def"]
min_password_length = 12

[rate_limits]
enabled = false
login_per_address = { burst = 3 }
registration_per_address = { per_second = 2, burst = 7 }

[database]
reader_connections = 8
""",
    )
    config = load(path, environ={})
    assert config.server_name == "example.org"
    assert config.data_dir == Path("/var/lib/trioserver")
    assert (config.listen_host, config.listen_port) == ("::1", 8448)
    assert config.base_url() == "https://matrix.example.org"
    assert config.registration.open is True
    assert config.registration.tokens == ("abc", "def")
    assert config.registration.min_password_length == 12
    assert config.registration.allow_guests is False  # untouched keys keep their defaults
    assert config.rate_limits.enabled is False
    # A partial bucket keeps the default for the missing field.
    assert config.rate_limits.login_per_address == RateLimit(per_second=0.5, burst=3)
    assert config.rate_limits.registration_per_address == RateLimit(per_second=2.0, burst=7)
    assert isinstance(config.rate_limits.registration_per_address.per_second, float)
    assert config.database.reader_connections == 8
    assert config.auth == Config().auth


def test_base_url_for_ipv6_and_wildcard_listeners() -> None:
    assert load(overrides={"listen": "[::1]:80"}, environ={}).base_url() == "http://[::1]:80"
    assert load(overrides={"listen": "0.0.0.0:81"}, environ={}).base_url() == (
        "http://127.0.0.1:81"
    )


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'server_name = "file.example"\nlisten = "127.0.0.1:1"\n')
    env = {
        "TRIOSERVER_SERVER_NAME": "env.example",
        "TRIOSERVER_DATA_DIR": "/env/data",
        "TRIOSERVER_LISTEN": "0.0.0.0:9000",
    }
    config = load(path, environ=env)
    assert config.server_name == "env.example"
    assert config.data_dir == Path("/env/data")
    assert config.listen == "0.0.0.0:9000"


def test_empty_environment_variables_are_ignored() -> None:
    config = load(environ={"TRIOSERVER_SERVER_NAME": "", "TRIOSERVER_LISTEN": ""})
    assert config.server_name == "localhost"
    assert config.listen == "127.0.0.1:8008"


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'server_name = "via-env.example"\n')
    assert load(environ={"TRIOSERVER_CONFIG": str(path)}).server_name == "via-env.example"


def test_overrides_win_over_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'server_name = "file.example"\n[registration]\nopen = false\n')
    config = load(
        path,
        overrides={
            "registration.open": True,
            "rate_limits.enabled": False,
            "server_name": "flag.example",
            "data_dir": "/flag",
        },
        environ={"TRIOSERVER_SERVER_NAME": "env.example"},
    )
    assert config.registration.open is True
    assert config.rate_limits.enabled is False
    assert config.server_name == "flag.example"
    assert config.data_dir == Path("/flag")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("servername = 'x'", "servername"),
        ("[registration]\nopenn = true", "registration.openn"),
        ("[nope]\nx = 1", "nope"),
        (
            "[rate_limits]\nlogin_per_address = { per_second = 1, brust = 2 }",
            "rate_limits.login_per_address",
        ),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), environ={})
    assert str(info.value).startswith(f"{key}: ")


def test_unknown_override_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^registration\.nope: unknown configuration key"):
        load(overrides={"registration.nope": True}, environ={})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("server_name = 5", "server_name"),
        ("data_dir = ''", "data_dir"),
        ("data_dir = 3", "data_dir"),
        ("max_request_body_bytes = '1000000'", "max_request_body_bytes"),
        ("max_request_body_bytes = -5", "max_request_body_bytes"),
        ("max_request_body_bytes = true", "max_request_body_bytes"),
        ("max_request_body_bytes = 2048.5", "max_request_body_bytes"),
        ("registration = 5", "registration"),
        ("[registration]\nopen = 'yes'", "registration.open"),
        ("[registration]\nopen = 1", "registration.open"),
        ("[registration]\ntokens = 'abc'", "registration.tokens"),
        ("[registration]\ntokens = ['']", "registration.tokens"),
        ("[registration]\ntokens = [1]", "registration.tokens"),
        ("[rate_limits]\nlogin_per_address = 5", "rate_limits.login_per_address"),
        (
            "[rate_limits]\nlogin_per_address = { per_second = 0 }",
            "rate_limits.login_per_address.per_second",
        ),
        (
            "[rate_limits]\nlogin_per_address = { per_second = true }",
            "rate_limits.login_per_address.per_second",
        ),
        (
            "[rate_limits]\nlogin_per_address = { burst = 1.5 }",
            "rate_limits.login_per_address.burst",
        ),
    ],
)
def test_wrong_types_are_rejected(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), environ={})
    assert str(info.value).startswith(f"{where}: ")


def test_wrong_override_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^registration\.open: expected true or false"):
        load(overrides={"registration.open": "true"}, environ={})


@pytest.mark.parametrize("name", ["", "bad name", "host:99999", "host:", "[::1", "exa_mple.org"])
def test_invalid_server_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^server_name: "):
        load(overrides={"server_name": name}, environ={})


def test_invalid_server_name_from_environment() -> None:
    with pytest.raises(ConfigError, match="server_name"):
        load(environ={"TRIOSERVER_SERVER_NAME": "not valid"})


@pytest.mark.parametrize("listen", ["8008", "localhost", "host:", "host:http", "host:65536", ":-1"])
def test_invalid_listen(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"^listen: "):
        load(overrides={"listen": listen}, environ={})


def test_split_listen() -> None:
    assert split_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert split_listen("[::]:8008") == ("::", 8008)
    assert split_listen("example.org:65535") == ("example.org", 65535)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"log_level": "verbose"}, "log_level"),
        ({"max_request_body_bytes": 1023}, "max_request_body_bytes"),
        ({"database.synchronous": "off"}, "database.synchronous"),
        ({"database.reader_connections": 0}, "database.reader_connections"),
        ({"auth.password_hash_memlimit_kib": 8191}, "auth"),
        ({"auth.password_hash_opslimit": 0}, "auth"),
        ({"auth.password_hash_concurrency": 0}, "auth.password_hash_concurrency"),
        ({"public_baseurl": "matrix.example.org"}, "URLs must start with"),
        ({"well_known.client_base_url": "ftp://x"}, "URLs must start with"),
    ],
)
def test_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(overrides=overrides, environ={})


def test_unreadable_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match=r"trioserver\.toml"):
        load(write(tmp_path, "server_name = "), environ={})


def test_config_is_frozen() -> None:
    config = load(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server_name = "x"  # type: ignore[misc]


def test_sample_config_round_trips(tmp_path: Path) -> None:
    text = sample_config("example.org")
    tomllib.loads(text)  # parses
    config = load(write(tmp_path, text), environ={})
    assert config == dataclasses.replace(Config(), server_name="example.org")


def test_sample_config_documents_every_key() -> None:
    table = tomllib.loads(sample_config("example.org"))
    defaults = Config()
    expected_top = {f.name for f in dataclasses.fields(Config)}
    assert set(table) == expected_top
    for f in dataclasses.fields(Config):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            assert set(table[f.name]) == {g.name for g in dataclasses.fields(value)}, f.name
    for name, bucket in table["rate_limits"].items():
        if name != "enabled":
            assert set(bucket) == {"per_second", "burst"}, name

"""Configuration: embedded defaults < TOML file < environment < command-line flags.

The result is a frozen `Config`; nothing reads configuration after start-up. Every key is
documented in `sample_config()` (what `trioserver generate-config` prints).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trioserver.identifiers import is_valid_port, is_valid_server_name


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `burst` requests at once, refilled at `per_second`."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class RateLimits:
    enabled: bool = True
    login_per_address: RateLimit = RateLimit(per_second=0.5, burst=10)
    login_failures_per_account: RateLimit = RateLimit(per_second=0.1, burst=5)
    registration_per_address: RateLimit = RateLimit(per_second=0.2, burst=5)
    # Authenticated requests from one other server (transactions, joins, reads).
    federation_per_origin: RateLimit = RateLimit(per_second=50.0, burst=200)
    # Events a local user sends (messages, state, redactions); application services' users
    # are exempt when their registration says `rate_limited: false`, their sender always.
    events_per_user: RateLimit = RateLimit(per_second=10.0, burst=50)


@dataclass(frozen=True)
class Registration:
    open: bool = False
    tokens: tuple[str, ...] = ()
    allow_guests: bool = False
    min_password_length: int = 8
    # Synapse's shared-secret registration (POST /_synapse/admin/v1/register, as used by
    # register_new_matrix_user and Complement); empty: off.
    shared_secret: str = ""


@dataclass(frozen=True)
class Auth:
    # Lifetime of access tokens issued to clients that asked for a refresh token.
    refreshable_access_token_lifetime_s: int = 300
    # Cost of Argon2id password hashing (libsodium units); the defaults are libsodium's
    # "interactive" level: 2 passes over 64 MiB.
    password_hash_opslimit: int = 2
    password_hash_memlimit_kib: int = 65536
    # At most this many password hashes are computed at once (each takes memlimit of RAM).
    password_hash_concurrency: int = 2


@dataclass(frozen=True)
class SupportContact:
    """One entry of /.well-known/matrix/support `contacts`."""

    role: str
    matrix_id: str = ""
    email_address: str = ""


@dataclass(frozen=True)
class WellKnown:
    client_base_url: str = ""
    server: str = ""
    # /.well-known/matrix/support; both empty: that endpoint answers 404.
    support_contacts: tuple[SupportContact, ...] = ()
    support_page: str = ""


@dataclass(frozen=True)
class Voip:
    # TURN servers handed out by GET /voip/turnServer with coturn `use-auth-secret` credentials.
    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: str = ""
    turn_user_lifetime_s: int = 86400


@dataclass(frozen=True)
class Rooms:
    # Room version of new rooms when the client does not ask for one (the spec recommends 12).
    default_room_version: str = "12"


@dataclass(frozen=True)
class Database:
    reader_connections: int = 4
    synchronous: str = "full"


@dataclass(frozen=True)
class Media:
    # Largest upload accepted, enforced while the body streams in (413 M_TOO_LARGE).
    max_upload_size: int = 50 * 1024 * 1024
    # Bytes of media one user may keep; 0 means no quota.
    user_quota_bytes: int = 0
    # Refuse to thumbnail images with more pixels than this (checked before decoding).
    max_image_pixels: int = 32_000_000
    # animated=true thumbnails return the original animated GIF/WebP up to this size.
    max_animated_thumbnail_bytes: int = 4 * 1024 * 1024
    # Seconds an id from POST /_matrix/media/v1/create stays usable, and how many unused ids
    # one user may hold at once.
    unused_expires_s: int = 86400
    max_pending_per_user: int = 100
    # When true, the deprecated unauthenticated /_matrix/media/v3 download and thumbnail
    # endpoints answer 404 for media uploaded after this server started (MSC3916).
    freeze_unauthenticated: bool = False


@dataclass(frozen=True)
class Tls:
    # The built-in TLS listener runs when both files are set.
    cert: str = ""
    key: str = ""
    listen: str = "0.0.0.0:8448"
    # Refuse clients that cannot do a post-quantum hybrid key agreement.
    pq_only: bool = False
    # Offer HTTP/2 by ALPN (clients without it use HTTP/1.1).
    http2: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key)


@dataclass(frozen=True)
class Metrics:
    # Prometheus text at http://<listen>/metrics; empty disables the listener.
    listen: str = "127.0.0.1:9008"


@dataclass(frozen=True)
class Federation:
    # Talk to other homeservers (outbound requests, other servers' keys).
    enabled: bool = True
    # Notary servers asked for a server's keys when the server itself cannot be reached.
    trusted_key_servers: tuple[str, ...] = ("matrix.org",)
    # PEM file of the CAs to trust for outbound federation TLS instead of the system's.
    ca_file: str = ""
    # Skip certificate checks on outbound federation (tests only).
    insecure_skip_verify: bool = False
    # Networks (CIDRs) federation may connect to although private or loopback; `true` in the
    # file means every address.
    allow_private_addresses: tuple[str, ...] = ()
    # A separate listener for federation traffic ("HOST:PORT"); empty: none.
    listen: str = ""
    # Whole outbound request, and its TCP+TLS connect, in seconds.
    request_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    # Fetching another server's keys (on the path of checking its requests).
    key_request_timeout_s: float = 10.0


@dataclass(frozen=True)
class Push:
    # Read notifications (push actions) older than this many days are deleted; unread ones are
    # kept (they are the notification counts). 0: deleted at the next pass once read.
    keep_read_notifications_days: int = 30
    # Seconds between two retention passes.
    retention_interval_s: float = 3600.0


@dataclass(frozen=True)
class UserDirectory:
    # Search every local user, not only those sharing a room or in public rooms.
    search_all_users: bool = False


@dataclass(frozen=True)
class Config:
    server_name: str = "localhost"
    data_dir: Path = Path("./data")
    listen: str = "127.0.0.1:8008"
    public_baseurl: str = ""
    log_level: str = "info"
    # One log line per request (method, path, status, latency, user).
    access_log: bool = True
    max_request_body_bytes: int = 1024 * 1024
    # Peers whose X-Forwarded-For / X-Forwarded-Proto headers are believed (addresses or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    # On SIGTERM: stop accepting, release long-polls, and give in-flight requests this long.
    shutdown_grace_s: float = 10.0
    registration: Registration = field(default_factory=Registration)
    auth: Auth = field(default_factory=Auth)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    well_known: WellKnown = field(default_factory=WellKnown)
    rooms: Rooms = field(default_factory=Rooms)
    database: Database = field(default_factory=Database)
    media: Media = field(default_factory=Media)
    tls: Tls = field(default_factory=Tls)
    metrics: Metrics = field(default_factory=Metrics)
    federation: Federation = field(default_factory=Federation)
    user_directory: UserDirectory = field(default_factory=UserDirectory)
    push: Push = field(default_factory=Push)
    voip: Voip = field(default_factory=Voip)
    # Application-service registration YAML files (spec: Application Service API, Registration).
    appservice_registrations: tuple[str, ...] = ()

    @property
    def listen_host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def database_path(self) -> Path:
        return self.data_dir / "trioserver.db"

    def base_url(self, bound_port: int | None = None) -> str:
        """The URL clients use: `public_baseurl`, else derived from the listener."""
        if self.public_baseurl:
            return self.public_baseurl.rstrip("/")
        host = self.listen_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{bound_port if bound_port is not None else self.listen_port}"


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not (port == "0" or is_valid_port(port)):
        raise ConfigError(f"listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


_SECTIONS: dict[str, type[Any]] = {
    "registration": Registration,
    "auth": Auth,
    "rate_limits": RateLimits,
    "well_known": WellKnown,
    "rooms": Rooms,
    "database": Database,
    "media": Media,
    "tls": Tls,
    "metrics": Metrics,
    "federation": Federation,
    "user_directory": UserDirectory,
    "push": Push,
    "voip": Voip,
}

# Every address: what `allow_private_addresses = true` stands for.
ALL_ADDRESSES = ("0.0.0.0/0", "::/0")


def _coerce_address_list(where: str, value: Any) -> tuple[str, ...]:
    """A list of CIDRs, or true (every address) / false (none)."""
    if isinstance(value, bool):
        return ALL_ADDRESSES if value else ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of CIDRs, or true or false")
    return tuple(value)


def _coerce_support_contacts(where: str, value: Any) -> tuple[SupportContact, ...]:
    """A list of { role = "...", matrix_id = "...", email_address = "..." } tables."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of tables")
    contacts = []
    for item in value:
        if (not isinstance(item, dict) or set(item) - {"role", "matrix_id", "email_address"}
                or not all(isinstance(v, str) for v in item.values())
                or not item.get("role")
                or not (item.get("matrix_id") or item.get("email_address"))):
            raise ConfigError(f"{where}: each contact needs a role and a matrix_id"
                              " or email_address")
        contacts.append(SupportContact(**item))
    return tuple(contacts)


# Keys whose values are not read by the default's type.
_CUSTOM_COERCE: dict[str, Callable[[str, Any], Any]] = {
    "federation.allow_private_addresses": _coerce_address_list,
    "well_known.support_contacts": _coerce_support_contacts,
}


def _coerce(where: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: expected a non-negative integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}: expected a positive number")
        return float(value)
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a path")
        return Path(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: expected a list of non-empty strings")
        return tuple(value)
    if isinstance(default, RateLimit):
        if not isinstance(value, dict) or set(value) - {"per_second", "burst"}:
            raise ConfigError(f"{where}: expected {{ per_second = N, burst = N }}")
        return RateLimit(
            per_second=_coerce(f"{where}.per_second", value.get("per_second", default.per_second),
                               default.per_second),
            burst=_coerce(f"{where}.burst", value.get("burst", default.burst), default.burst),
        )
    raise ConfigError(f"{where}: unsupported value")  # pragma: no cover - programming error


def _apply(obj: Any, table: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown configuration key")
        current = getattr(obj, key)
        if key in _SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a [{key}] table")
            changes[key] = _apply(current, value, f"{key}.")
        elif where in _CUSTOM_COERCE:
            changes[key] = _CUSTOM_COERCE[where](where, value)
        else:
            changes[key] = _coerce(where, value, current)
    return replace(obj, **changes)


def load(
    path: Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the configuration from defaults, an optional TOML file, env and flag overrides.

    `overrides` uses dotted keys (`"registration.open"`) for values given on the command line.
    """
    env = os.environ if environ is None else environ
    config = Config()
    if path is None and env.get("TRIOSERVER_CONFIG"):
        path = Path(env["TRIOSERVER_CONFIG"])
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from e
        config = _apply(config, table, "")
    flat: dict[str, Any] = {}
    for key, var in (("server_name", "TRIOSERVER_SERVER_NAME"), ("data_dir", "TRIOSERVER_DATA_DIR"),
                     ("listen", "TRIOSERVER_LISTEN")):
        if env.get(var):
            flat[key] = env[var]
    flat.update(overrides or {})
    for dotted, value in flat.items():
        section, _, key = dotted.rpartition(".")
        config = _apply(config, {section: {key: value}} if section else {key: value}, "")
    return validate(config)


def validate(config: Config) -> Config:
    if not is_valid_server_name(config.server_name):
        raise ConfigError(f"server_name: {config.server_name!r} is not a valid server name")
    split_listen(config.listen)
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: expected debug, info, warning or error")
    if config.max_request_body_bytes < 1024:
        raise ConfigError("max_request_body_bytes: must be at least 1024")
    if config.rooms.default_room_version not in ("10", "11", "12"):
        raise ConfigError("rooms.default_room_version: this server creates rooms in 10, 11, 12")
    if config.database.synchronous not in ("full", "normal"):
        raise ConfigError("database.synchronous: expected \"full\" or \"normal\"")
    limits = config.rate_limits
    for name in ("login_per_address", "login_failures_per_account", "registration_per_address",
                 "federation_per_origin", "events_per_user"):
        if getattr(limits, name).burst < 1:
            raise ConfigError(f"rate_limits.{name}.burst: must be at least 1")
    if config.database.reader_connections < 1:
        raise ConfigError("database.reader_connections: must be at least 1")
    if config.auth.password_hash_memlimit_kib < 8192 or config.auth.password_hash_opslimit < 1:
        raise ConfigError("auth: Argon2id needs memlimit >= 8192 KiB and opslimit >= 1")
    if config.auth.password_hash_concurrency < 1:
        raise ConfigError("auth.password_hash_concurrency: must be at least 1")
    if config.media.max_upload_size < 1:
        raise ConfigError("media.max_upload_size: must be at least 1")
    if config.media.max_image_pixels < 1:
        raise ConfigError("media.max_image_pixels: must be at least 1")
    if config.media.unused_expires_s < 1:
        raise ConfigError("media.unused_expires_s: must be at least 1")
    _validate_network(config)
    _validate_federation(config.federation)
    for url in (config.public_baseurl, config.well_known.client_base_url):
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{url!r}: URLs must start with http:// or https://")
    return config


def _validate_network(config: Config) -> None:
    tls = config.tls
    if tls.enabled:
        if not (tls.cert and tls.key):
            raise ConfigError("tls: set both cert and key (PEM files) to enable the TLS listener")
        split_listen(tls.listen)
    if config.metrics.listen:
        split_listen(config.metrics.listen)
    for entry in config.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"trusted_proxies: {entry!r} is not an address or CIDR") from None


def _validate_federation(fed: Federation) -> None:
    for name in fed.trusted_key_servers:
        if not is_valid_server_name(name):
            raise ConfigError(f"federation.trusted_key_servers: {name!r} is not a server name")
    for entry in fed.allow_private_addresses:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"federation.allow_private_addresses: {entry!r} is not an address or CIDR"
            ) from None
    if fed.listen:
        try:
            split_listen(fed.listen)
        except ConfigError:
            raise ConfigError(
                f"federation.listen: expected HOST:PORT, got {fed.listen!r}") from None
    if fed.ca_file:
        # Loaded once here so that a bad file stops start-up with the key named.
        try:
            ssl.create_default_context(cafile=fed.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"federation.ca_file: cannot load {fed.ca_file}: {e}") from None


def _bucket(limit: RateLimit) -> str:
    return f"{{ per_second = {limit.per_second}, burst = {limit.burst} }}"


def sample_config(server_name: str) -> str:
    """A complete, commented TOML configuration with every key at its default."""
    d = Config()
    r = d.rate_limits
    m = d.media
    f = d.federation
    return f"""\
# trioserver configuration. Every key is optional; the values shown are the defaults.
# Precedence: these defaults < this file < TRIOSERVER_* environment variables < command-line flags.

# The domain part of every user ID (@alice:{server_name}). Cannot be changed once users exist.
server_name = "{server_name}"

# Where the database (trioserver.db), signing keys and media live. Created if missing.
data_dir = "{d.data_dir}"

# Address and port of the client HTTP listener. Port 0 picks a free port.
listen = "{d.listen}"

# The URL clients reach this server at (used in /.well-known/matrix/client).
# Empty: http://<listen address>.
public_baseurl = ""

# debug, info, warning or error. Request bodies and tokens are never logged.
log_level = "{d.log_level}"

# One log line per request: client, method, path (no query string), status, latency, user.
access_log = {str(d.access_log).lower()}

# Reverse proxies in front of this server (addresses or CIDRs, e.g. ["127.0.0.1", "10.0.0.0/8"]).
# Only requests from these peers have X-Forwarded-For / X-Forwarded-Proto believed; the client
# address is then the right-most address in X-Forwarded-For that is not itself a trusted proxy.
trusted_proxies = []

# On SIGTERM/SIGINT the server stops accepting connections, answers waiting /sync long-polls at
# once, lets in-flight requests and writes finish for up to this many seconds, then exits 0.
shutdown_grace_s = {d.shutdown_grace_s}

# Largest request body accepted by JSON endpoints; larger bodies get 413 M_TOO_LARGE.
max_request_body_bytes = {d.max_request_body_bytes}

# Application services (bridges, bots): paths of their registration YAML files (id, url,
# as_token, hs_token, sender_localpart, namespaces). `trioserver check-appservice FILE` checks
# one; `serve --appservice-registration FILE` adds more. Read at start-up only.
appservice_registrations = []

[registration]
# Anyone may register an account with POST /_matrix/client/v3/register.
open = {str(d.registration.open).lower()}
# Registration tokens (m.login.registration_token). When any are listed, registration needs one,
# whether or not `open` is set. With `open = false` and none here, tokens made with the admin API
# (POST /_synapse/admin/v1/registration_tokens/new, with uses_allowed and expiry_time) let
# people register too.
tokens = []
# Allow guest accounts (kind=guest).
allow_guests = {str(d.registration.allow_guests).lower()}
# A secret for Synapse-style shared-secret registration (POST /_synapse/admin/v1/register, used
# by register_new_matrix_user): whoever knows it can create accounts, admins included.
# Empty: off.
shared_secret = ""
# Shortest password accepted at registration and password change.
min_password_length = {d.registration.min_password_length}

[auth]
# Lifetime in seconds of access tokens issued to clients that support refresh tokens.
refreshable_access_token_lifetime_s = {d.auth.refreshable_access_token_lifetime_s}
# Argon2id cost for password hashes (libsodium units) and how many hashes may run at once.
password_hash_opslimit = {d.auth.password_hash_opslimit}
password_hash_memlimit_kib = {d.auth.password_hash_memlimit_kib}
password_hash_concurrency = {d.auth.password_hash_concurrency}

[rate_limits]
# Token buckets kept in memory; 429 M_LIMIT_EXCEEDED with retry_after_ms when empty.
enabled = {str(r.enabled).lower()}
login_per_address = {_bucket(r.login_per_address)}
login_failures_per_account = {_bucket(r.login_failures_per_account)}
registration_per_address = {_bucket(r.registration_per_address)}
# Authenticated federation requests from one other server (429 M_LIMIT_EXCEEDED beyond it).
federation_per_origin = {_bucket(r.federation_per_origin)}
# Events one local user sends: messages, state and redactions (not joins, typing or receipts).
# Appservice users are exempt when their registration has rate_limited: false.
events_per_user = {_bucket(r.events_per_user)}

[well_known]
# base_url served at /.well-known/matrix/client. Empty: public_baseurl.
client_base_url = ""
# "host:port" served as m.server at /.well-known/matrix/server (federation delegation).
# Empty: that endpoint answers 404, which tells servers to use the server name on port 8448.
server = ""
# Served at /.well-known/matrix/support (404 when both are empty). Contacts are tables:
# [{{ role = "m.role.admin", matrix_id = "@admin:{server_name}", email_address = "" }}]
support_contacts = []
support_page = ""

[voip]
# TURN URIs for GET /_matrix/client/v3/voip/turnServer, e.g.
# ["turn:turn.example.org?transport=udp"], and coturn's static-auth-secret (use-auth-secret).
# Either empty: the endpoint answers {{}}.
turn_uris = []
turn_shared_secret = ""
# Lifetime in seconds of the TURN credentials handed out.
turn_user_lifetime_s = {d.voip.turn_user_lifetime_s}

[rooms]
# Room version of new rooms when the client does not ask for one: "10", "11" or "12".
default_room_version = "{d.rooms.default_room_version}"

[database]
# SQLite reader connections (concurrent reads); writes go through one serialized writer.
reader_connections = {d.database.reader_connections}
# "full" fsyncs every commit (group commit amortises it); "normal" may lose the last commits
# on power loss but never corrupts the database.
synchronous = "{d.database.synchronous}"

[media]
# Largest upload in bytes (50 MiB), enforced while the body streams in: 413 M_TOO_LARGE.
# Media uploads are exempt from max_request_body_bytes. Files live in <data_dir>/media/.
max_upload_size = {m.max_upload_size}
# Bytes of media one user may store in total; 0 means no quota.
user_quota_bytes = {m.user_quota_bytes}
# Images with more pixels than this are never decoded for thumbnails (413 M_TOO_LARGE).
max_image_pixels = {m.max_image_pixels}
# animated=true thumbnails of animated GIF/WebP return the original when it is at most this big.
max_animated_thumbnail_bytes = {m.max_animated_thumbnail_bytes}
# Lifetime in seconds of an id from POST /_matrix/media/v1/create, and how many unused ids one
# user may hold.
unused_expires_s = {m.unused_expires_s}
max_pending_per_user = {m.max_pending_per_user}
# true: the deprecated unauthenticated /_matrix/media/v3/download and /thumbnail endpoints
# answer 404 for media uploaded after start-up (clients must use /_matrix/client/v1/media).
freeze_unauthenticated = {str(m.freeze_unauthenticated).lower()}

[tls]
# Built-in TLS listener, on when cert and key are set (PEM; cert may hold the whole chain).
# It negotiates TLS 1.2/1.3 and prefers the post-quantum hybrid key agreement X25519MLKEM768,
# falling back to X25519 and the NIST curves for older clients. The plain `listen` above keeps
# running too: bind it to 127.0.0.1 when this listener is public.
cert = ""
key = ""
listen = "{d.tls.listen}"
# true: only clients that offer X25519MLKEM768 (or another ML-KEM hybrid) can connect.
pq_only = {str(d.tls.pq_only).lower()}
# Offer HTTP/2 by ALPN; clients that do not ask for it get HTTP/1.1.
http2 = {str(d.tls.http2).lower()}

[push]
# Read notifications (GET /notifications, the counts' rows) older than this many days are
# deleted; unread ones are kept whatever their age. 0: deleted at the next pass once read.
keep_read_notifications_days = {d.push.keep_read_notifications_days}
# Seconds between two of those passes.
retention_interval_s = {d.push.retention_interval_s}

[user_directory]
# POST /user_directory/search finds users sharing a room with the searcher and members of public
# rooms; true: every local (non-deactivated) user as well.
search_all_users = {str(d.user_directory.search_all_users).lower()}

[metrics]
# Prometheus text at http://<listen>/metrics on its own listener (keep it on loopback or a
# private network). Empty string: no metrics listener.
listen = "{d.metrics.listen}"

[federation]
# Talk to other Matrix servers. false: no outbound federation requests and no fetching of other
# servers' keys; /_matrix/federation endpoints answer 404. This server's own keys
# (/_matrix/key/v2/server) are served either way.
enabled = {str(f.enabled).lower()}
# Notary servers asked for another server's signing keys when that server cannot be reached
# itself (POST /_matrix/key/v2/query); their answers must be signed by them. [] asks no one.
trusted_key_servers = [{", ".join(f'"{s}"' for s in f.trusted_key_servers)}]
# PEM file of the certificate authorities trusted for outbound federation TLS, instead of the
# system's. Empty: the system's CA store.
ca_file = ""
# true turns off certificate checks of other servers. For tests only: anyone on the network
# path could then impersonate any server.
insecure_skip_verify = {str(f.insecure_skip_verify).lower()}
# Outbound federation never connects to private, loopback, link-local or other non-public
# addresses (whatever DNS, SRV or .well-known say) except those in these networks, e.g.
# ["10.0.0.0/8", "fd00::/8"] for a private federation; true allows every address.
allow_private_addresses = []
# A separate listener for federation ("HOST:PORT", e.g. "0.0.0.0:8448" behind a TLS proxy).
# Empty: federation is served on the listeners above.
listen = "{f.listen}"
# Seconds for a whole outbound request, and for its TCP and TLS connect.
request_timeout_s = {f.request_timeout_s}
connect_timeout_s = {f.connect_timeout_s}
# Seconds for fetching another server's keys (done while checking its requests).
key_request_timeout_s = {f.key_request_timeout_s}
"""

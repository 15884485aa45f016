"""The set of services one server runs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.config import Config
from trioserver.services.accounts import Accounts
from trioserver.services.devices import Devices
from trioserver.services.passwords import PasswordHasher
from trioserver.services.profile import Profiles
from trioserver.services.ratelimit import RateLimiter
from trioserver.services.sessions import Sessions
from trioserver.services.uia import UIA
from trioserver.storage.db import Database
from trioserver.storage.ttl_store import TTLStore


@dataclass
class ServerInfo:
    """Facts known only once the server runs (the bound address)."""

    base_url: str = ""


@dataclass(frozen=True)
class Services:
    config: Config
    db: Database
    ttl: TTLStore
    serializer: KeyedSerializer
    notifier: Notifier
    sessions: Sessions
    accounts: Accounts
    devices: Devices
    profiles: Profiles
    info: ServerInfo


def build_services(config: Config, db: Database, ttl: TTLStore) -> Services:
    sessions = Sessions(db, refreshable_lifetime_ms=config.auth.refreshable_access_token_lifetime_s
                        * 1000)
    hasher = PasswordHasher(
        opslimit=config.auth.password_hash_opslimit,
        memlimit_kib=config.auth.password_hash_memlimit_kib,
        concurrency=config.auth.password_hash_concurrency,
    )
    limiter = RateLimiter(ttl, enabled=config.rate_limits.enabled)
    accounts = Accounts(config, db, sessions, hasher, UIA(ttl), limiter)
    return Services(
        config=config,
        db=db,
        ttl=ttl,
        serializer=KeyedSerializer(),
        notifier=Notifier(),
        sessions=sessions,
        accounts=accounts,
        devices=Devices(db, sessions, accounts),
        profiles=Profiles(config, db),
        info=ServerInfo(base_url=config.base_url()),
    )

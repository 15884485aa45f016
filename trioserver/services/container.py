"""The set of services one server runs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.config import Config
from trioserver.services.accounts import Accounts
from trioserver.services.devices import Devices
from trioserver.services.events.signing import SigningKey
from trioserver.services.passwords import PasswordHasher
from trioserver.services.profile import Profiles
from trioserver.services.ratelimit import RateLimiter
from trioserver.services.rooms.appender import Appender
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.directory import Directory
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.rooms.service import Rooms
from trioserver.services.rooms.upgrade import Upgrader
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
    signing_key: SigningKey
    rooms: Rooms
    room_reader: RoomReader
    directory: Directory
    upgrader: Upgrader
    info: ServerInfo


def build_services(config: Config, db: Database, ttl: TTLStore,
                   signing_key: SigningKey) -> Services:
    sessions = Sessions(db, refreshable_lifetime_ms=config.auth.refreshable_access_token_lifetime_s
                        * 1000)
    hasher = PasswordHasher(
        opslimit=config.auth.password_hash_opslimit,
        memlimit_kib=config.auth.password_hash_memlimit_kib,
        concurrency=config.auth.password_hash_concurrency,
    )
    limiter = RateLimiter(ttl, enabled=config.rate_limits.enabled)
    accounts = Accounts(config, db, sessions, hasher, UIA(ttl), limiter)
    serializer = KeyedSerializer()
    notifier = Notifier()
    room_cache = RoomCache(db)
    appender = Appender(server_name=config.server_name, signing_key=signing_key, db=db,
                        cache=room_cache, serializer=serializer, notifier=notifier)
    rooms = Rooms(config, db, room_cache, appender)
    return Services(
        config=config,
        db=db,
        ttl=ttl,
        serializer=serializer,
        notifier=notifier,
        sessions=sessions,
        accounts=accounts,
        devices=Devices(db, sessions, accounts),
        profiles=Profiles(config, db),
        signing_key=signing_key,
        rooms=rooms,
        upgrader=Upgrader(config.server_name, db, rooms, appender),
        room_reader=RoomReader(db, room_cache),
        directory=Directory(db, room_cache),
        info=ServerInfo(base_url=config.base_url()),
    )

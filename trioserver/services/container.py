"""The set of services one server runs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

from trioserver.concurrency import KeyedSerializer, Notifier
from trioserver.config import Config
from trioserver.services.account_admin import AccountAdmin
from trioserver.services.account_data import AccountData
from trioserver.services.accounts import Accounts
from trioserver.services.admin_watch import AdminWatch
from trioserver.services.appservice.delivery import AppserviceDelivery
from trioserver.services.appservice.queries import query_alias
from trioserver.services.appservice.registration import load_registrations
from trioserver.services.appservice.registry import AppServices
from trioserver.services.cross_signing import CrossSigning
from trioserver.services.deactivation import RoomParter
from trioserver.services.dehydrated_devices import DehydratedDevices
from trioserver.services.devices import Devices
from trioserver.services.e2ee import E2EEKeys
from trioserver.services.events.signing import SigningKey
from trioserver.services.federation.backfill import Backfiller
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.device_lists_out import DeviceListSender
from trioserver.services.federation.ephemeral import EphemeralFederation
from trioserver.services.federation.inbound import InboundFederation
from trioserver.services.federation.invites import Invites
from trioserver.services.federation.joins import RemoteJoiner
from trioserver.services.federation.keys import KeyRing
from trioserver.services.federation.queries import RemoteQueries
from trioserver.services.federation.reads import FederationReads
from trioserver.services.federation.remote_keys import RemoteKeys
from trioserver.services.federation.remote_media import RemoteMedia
from trioserver.services.federation.room_servers import RoomServers
from trioserver.services.federation.sender import FederationSender
from trioserver.services.federation.setup import build_federation
from trioserver.services.federation.to_device_edu import FederatedToDevice
from trioserver.services.key_backup import KeyBackup
from trioserver.services.login_tokens import LoginTokens
from trioserver.services.media import MediaRepository
from trioserver.services.openid import OpenIdTokens
from trioserver.services.passwords import PasswordHasher
from trioserver.services.presence import Presence
from trioserver.services.profile import Profiles
from trioserver.services.push.actions import PushActions
from trioserver.services.push.delivery import PushDelivery
from trioserver.services.push.pushers import Pushers
from trioserver.services.push.retention import PushActionRetention
from trioserver.services.push.service import PushRules
from trioserver.services.ratelimit import RateLimiter
from trioserver.services.receipts.service import Receipts
from trioserver.services.rooms.appender import Appender
from trioserver.services.rooms.cache import RoomCache
from trioserver.services.rooms.directory import Directory
from trioserver.services.rooms.hierarchy import Hierarchy
from trioserver.services.rooms.reads import RoomReader
from trioserver.services.rooms.relations import Relations
from trioserver.services.rooms.remote import RemoteEvents
from trioserver.services.rooms.service import Rooms
from trioserver.services.rooms.upgrade import Upgrader
from trioserver.services.search import Search
from trioserver.services.sessions import Sessions
from trioserver.services.sliding_sync.activity import RoomActivity
from trioserver.services.sliding_sync.engine import SlidingSyncEngine
from trioserver.services.sliding_sync.extensions import ExtensionsRunner
from trioserver.services.sliding_sync.room_data import RoomDataBuilder
from trioserver.services.sliding_sync.room_list import RoomLister
from trioserver.services.synapse_admin import SynapseAdmin
from trioserver.services.sync.engine import SyncEngine
from trioserver.services.sync.filters import Filters
from trioserver.services.sync.rooms import RoomSyncer
from trioserver.services.sync.streams import DEVICE_DELETIONS_KEY, StreamSource
from trioserver.services.to_device import ToDevice
from trioserver.services.typing_notifications import Typing
from trioserver.services.uia import UIA
from trioserver.services.user_directory import UserDirectory
from trioserver.storage.blob_store import BlobStore
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
    filters: Filters
    sync: SyncEngine
    account_data: AccountData
    typing: Typing
    presence: Presence
    to_device: ToDevice
    receipts: Receipts
    push_rules: PushRules
    push_actions: PushActions
    pushers: Pushers
    # Started by server.py: `await nursery.start(services.push_delivery.run)`.
    push_delivery: PushDelivery
    user_directory: UserDirectory
    e2ee: E2EEKeys
    cross_signing: CrossSigning
    key_backup: KeyBackup
    dehydrated_devices: DehydratedDevices
    media: MediaRepository
    info: ServerInfo
    # Started by server.py: `await nursery.start(services.admin_watch.run)`.
    admin_watch: AdminWatch
    limiter: RateLimiter
    openid: OpenIdTokens
    hierarchy: Hierarchy
    sliding_sync: SlidingSyncEngine
    # Other servers' keys (and ours), and signed requests to other servers.
    keyring: KeyRing
    federation_client: FederationClient
    room_servers: RoomServers
    federation_reads: FederationReads
    federation_in: InboundFederation
    # Started by server.py: `await nursery.start(services.federation_sender.run)`.
    federation_sender: FederationSender
    # Started by server.py: typing, receipts and presence EDUs out (and their handlers in).
    federation_ephemeral: EphemeralFederation
    # Started by server.py after the sender: the to-device outbox, in order, exactly once.
    federated_to_device: FederatedToDevice
    invites: Invites
    remote_events: RemoteEvents
    # Profiles, aliases and public rooms of other servers.
    remote_queries: RemoteQueries
    # E2EE keys of other servers' users (client /keys/query, /keys/claim) and ours for them.
    remote_keys: RemoteKeys
    # Started by server.py: indexes events stored before the search index existed.
    search: Search
    # Whois, account locking and suspension (spec "Server administration").
    account_admin: AccountAdmin
    # The /_synapse/admin subset (users, rooms) for Synapse admin tools.
    synapse_admin: SynapseAdmin
    # /relations, /threads and duplicate-reaction checks.
    relations: Relations
    # Registered application services (read-only after start-up): lookups by token, id, namespace.
    appservices: AppServices
    # Started by server.py: events pushed to each appservice, in order, exactly once.
    appservice_delivery: AppserviceDelivery
    # Started by server.py: takes deactivated users out of their rooms.
    room_parter: RoomParter
    # Started by server.py: announces devices deleted by the offline admin commands.
    device_list_sender: DeviceListSender
    # Started by server.py: deletes old read push actions.
    push_retention: PushActionRetention


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
    accounts = Accounts(config, db, sessions, hasher, UIA(ttl), limiter, LoginTokens(ttl),
                        ttl=ttl)
    account_admin = AccountAdmin(config.server_name, db, sessions)
    appservices = AppServices(config.server_name,
                              load_registrations(config.appservice_registrations))
    sessions.appservices = appservices
    accounts.appservices = appservices
    serializer = KeyedSerializer()
    notifier = Notifier()
    room_cache = RoomCache(db)
    room_reader = RoomReader(db, room_cache)
    account_data = AccountData(db, notifier, room_cache, room_reader)
    receipts = Receipts(db=db, cache=room_cache, notifier=notifier, account_data=account_data)
    push_rules = PushRules(db, account_data)
    push_actions = PushActions(server_name=config.server_name, db=db, cache=room_cache,
                               rules=push_rules, unread_position=receipts.unread_position,
                               reader=room_reader)
    push_actions.exclusive_appservice_user = appservices.is_exclusive_user
    pushers = Pushers(db)
    push_delivery = PushDelivery(db, room_cache, pushers)
    push_actions.add_notify_listener(push_delivery.on_notify)
    appender = Appender(server_name=config.server_name, signing_key=signing_key, db=db,
                        cache=room_cache, serializer=serializer, notifier=notifier,
                        commit_hook=push_actions.prepare)
    rooms = Rooms(config, db, room_cache, appender)
    room_parter = RoomParter(db, rooms)
    accounts.on_deactivated = room_parter.wake
    accounts.on_erased = room_reader.mark_erased
    if appservices:
        rooms.alias_namespaces = appservices.alias_namespaces
        rooms.appservice_alias = partial(query_alias, appservices)
    typing = Typing(notifier, room_cache, room_reader)
    appender.add_membership_listener(typing.membership_changed)
    presence = Presence(db, notifier, server_name=config.server_name)
    to_device = ToDevice(db, notifier, config.server_name)
    filters = Filters(db)
    e2ee = E2EEKeys(config.server_name, db, notifier, serializer)
    sessions.add_device_listener(lambda _user: notifier.notify([DEVICE_DELETIONS_KEY]))
    keyring, federation_client = build_federation(config, db, signing_key)
    invites = Invites(config.server_name, db, room_cache, notifier, signing_key,
                      federation_client, keyring)
    sources: list[StreamSource] = [account_data.source, receipts.source, receipts.unread_source,
                                   typing.source, to_device.source, presence.source,
                                   e2ee.source, invites.source]
    syncer = RoomSyncer(db, room_cache, room_reader)
    activity = RoomActivity(db, room_cache)
    appender.add_event_listener(activity.on_event)
    appservice_delivery = AppserviceDelivery(db, room_cache, appservices)
    appender.add_event_listener(appservice_delivery.on_event)
    if appservice_delivery.wants_ephemeral:
        typing.add_listener(appservice_delivery.typing_changed)
        receipts.add_listener(appservice_delivery.receipt_stored)
        presence.add_listener(appservice_delivery.presence_changed)
        appservice_delivery.typing_in = typing.typing_in
        to_device.queued_listeners.append(appservice_delivery.to_device_queued)
    if appservice_delivery.wants_device_lists:
        e2ee.change_listeners.append(appservice_delivery.device_list_changed)
    lister = RoomLister(db, room_cache, activity)
    appender.add_membership_listener(lister.on_membership)
    sliding_sync = SlidingSyncEngine(
        notifier, lister,
        RoomDataBuilder(db, room_cache, room_reader, syncer),
        ExtensionsRunner(account_data=account_data.source, receipts=receipts.source,
                         typing=typing.source, to_device=to_device.source, e2ee=e2ee.source,
                         initial_account_data=[push_rules.initial_account_data]),
        receipts.unread_source, presence_hook=presence.touch)
    sync = SyncEngine(db, notifier, filters, syncer, sources,
                      presence_hook=presence.touch,
                      initial_account_data=[push_rules.initial_account_data])
    directory = Directory(db, room_cache)
    hierarchy = Hierarchy(room_cache, directory)

    async def remote_hierarchy(room_id: str, via: list[str], suggested_only: bool
                               ) -> dict[str, Any] | None:
        for server in via[:3]:
            try:
                answer = await federation_client.get_json(
                    server, f"/_matrix/federation/v1/hierarchy/{quote(room_id, safe='')}",
                    query={"suggested_only": "true" if suggested_only else "false"})
            except Exception:  # an unreachable or refusing server: try the next one
                continue
            if isinstance(answer, dict):
                return answer
        return None

    hierarchy.remote = remote_hierarchy
    room_servers = RoomServers(db)
    appender.add_membership_listener(room_servers.on_membership)
    remote_events = RemoteEvents(db, room_cache, serializer, appender)

    async def send_transaction(destination: str, txn_id: str, body: dict[str, Any]) -> Any:
        return await federation_client.put_json(
            destination, f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}", body)

    async def fetch_missing(origin: str, room_id: str, earliest: list[str],
                            latest: list[str], limit: int) -> list[Any]:
        response = await federation_client.post_json(
            origin, f"/_matrix/federation/v1/get_missing_events/{quote(room_id, safe='')}",
            {"earliest_events": earliest, "latest_events": latest, "limit": limit})
        events = response.get("events") if isinstance(response, dict) else None
        return events if isinstance(events, list) else []

    async def fetch_state(origin: str, room_id: str, event_id: str
                          ) -> tuple[list[Any], list[Any], Any]:
        room = quote(room_id, safe="")
        state = await federation_client.get_json(
            origin, f"/_matrix/federation/v1/state/{room}", query={"event_id": event_id})
        event = await federation_client.get_json(
            origin, f"/_matrix/federation/v1/event/{quote(event_id, safe='')}")
        pdus = event.get("pdus") if isinstance(event, dict) else None
        if not isinstance(state, dict) or not isinstance(pdus, list) or not pdus:
            raise ValueError(f"{origin} sent no state or event for {event_id}")
        return list(state.get("pdus", [])), list(state.get("auth_chain", [])), pdus[0]

    federation_sender = FederationSender(config.server_name, room_servers, send_transaction, db)
    room_reader.backfill = Backfiller(config.server_name, db, room_cache, room_servers,
                                      federation_client, keyring).backfill
    rooms.invites = invites
    rooms.remote_join = RemoteJoiner(config.server_name, signing_key, db, room_cache, appender,
                                     federation_client, keyring).join
    appender.add_event_listener(federation_sender.on_event)
    # Other servers' media, profiles, aliases and public rooms, asked for on demand.
    blobs = BlobStore(config.data_dir / "media")
    media = MediaRepository(config.server_name, config.media, db, blobs, serializer)
    remote_queries = RemoteQueries(federation_client, ttl)
    appender.add_event_listener(remote_queries.on_event)
    profiles = Profiles(config, db)
    if config.federation.enabled:
        media.remote_fetch = RemoteMedia(federation_client, blobs,
                                         config.media.max_upload_size).fetch
        profiles.remote = remote_queries.profile
        rooms.remote_alias = remote_queries.alias
    federation_in = InboundFederation(config.server_name, room_cache, remote_events, keyring,
                                      ttl, fetch_missing, fetch_state)
    federation_ephemeral = EphemeralFederation(
        config.server_name, db, room_servers, federation_sender.queue_edu, typing=typing,
        receipts=receipts, presence=presence, origin_allowed=federation_in.origin_allowed)
    federation_ephemeral.register(federation_in.on_edu)
    # E2EE across servers: keys queried and claimed remotely, to-device and device lists.
    remote_keys = RemoteKeys(config.server_name, db, e2ee, federation_client)
    appender.add_membership_listener(remote_keys.on_membership)
    federation_in.on_edu("m.device_list_update", remote_keys.on_device_list_update)
    federation_in.on_edu("m.signing_key_update", remote_keys.on_signing_key_update)
    federated_to_device = FederatedToDevice(config.server_name, db, to_device.deliver_remote,
                                            federation_sender.queue_edu)
    to_device.remote = federated_to_device
    federation_sender.edu_ack_listeners.append(federated_to_device.on_sent)
    federation_sender.edu_drop_listeners.append(federated_to_device.requeue)
    federation_in.on_edu("m.direct_to_device", federated_to_device.receive)
    device_list_sender = DeviceListSender(
        config.server_name, db, room_servers, federation_sender.queue_edu)
    e2ee.change_listeners.append(device_list_sender.on_change)
    sessions.add_deletion_listener(device_list_sender.on_deleted)
    synapse_admin = SynapseAdmin(config, db, sessions, accounts, account_admin)
    synapse_admin.rooms = appender
    synapse_admin.blobs = blobs
    return Services(
        config=config,
        db=db,
        ttl=ttl,
        serializer=serializer,
        notifier=notifier,
        sessions=sessions,
        accounts=accounts,
        devices=Devices(db, sessions, accounts),
        profiles=profiles,
        signing_key=signing_key,
        rooms=rooms,
        upgrader=Upgrader(config.server_name, db, rooms, appender),
        filters=filters,
        sync=sync,
        room_reader=room_reader,
        directory=directory,
        account_data=account_data,
        typing=typing,
        presence=presence,
        to_device=to_device,
        receipts=receipts,
        push_rules=push_rules,
        push_actions=push_actions,
        pushers=pushers,
        push_delivery=push_delivery,
        user_directory=UserDirectory(
            db, search_all_users=config.user_directory.search_all_users),
        e2ee=e2ee,
        cross_signing=CrossSigning(db, e2ee, accounts),
        key_backup=KeyBackup(db, serializer),
        dehydrated_devices=DehydratedDevices(db, sessions, e2ee, serializer),
        media=media,
        info=ServerInfo(base_url=config.base_url()),
        admin_watch=AdminWatch(db, sessions, notifier,
                               on_change=(room_parter.wake, device_list_sender.wake)),
        limiter=limiter,
        openid=OpenIdTokens(config.server_name, ttl),
        hierarchy=hierarchy,
        sliding_sync=sliding_sync,
        keyring=keyring,
        federation_client=federation_client,
        room_servers=room_servers,
        federation_reads=FederationReads(config.server_name, db, room_cache, room_servers),
        federation_in=federation_in,
        federation_sender=federation_sender,
        federation_ephemeral=federation_ephemeral,
        federated_to_device=federated_to_device,
        invites=invites,
        remote_events=remote_events,
        remote_queries=remote_queries,
        remote_keys=remote_keys,
        search=Search(db, room_cache, room_reader),
        account_admin=account_admin,
        synapse_admin=synapse_admin,
        relations=Relations(db, room_cache, room_reader),
        appservices=appservices,
        appservice_delivery=appservice_delivery,
        room_parter=room_parter,
        device_list_sender=device_list_sender,
        push_retention=PushActionRetention(
            db, config.server_name, keep_read_days=config.push.keep_read_notifications_days,
            interval_s=config.push.retention_interval_s),
    )

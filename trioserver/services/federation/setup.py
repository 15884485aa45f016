"""Building the federation services from the configuration (called by build_services)."""

from __future__ import annotations

from trioserver.config import Config
from trioserver.services.events.signing import SigningKey
from trioserver.services.federation.client import FederationClient
from trioserver.services.federation.keys import KeyRing, OldVerifyKey
from trioserver.storage.db import Database
from trioserver.storage.repositories import server_keys as repo


def load_old_keys(db: Database) -> list[OldVerifyKey]:
    """This server's retired signing keys (blocking: start-up only)."""
    return [OldVerifyKey(key_id, key, expired_ts)
            for key_id, key, expired_ts in db.read_sync(repo.old_signing_keys)]


def build_federation(config: Config, db: Database,
                     signing_key: SigningKey) -> tuple[KeyRing, FederationClient]:
    fed = config.federation
    client = FederationClient(
        server_name=config.server_name,
        signing_key=signing_key,
        ca_file=fed.ca_file,
        insecure_skip_verify=fed.insecure_skip_verify,
        allowed_private_networks=fed.allow_private_addresses,
        enabled=fed.enabled,
        timeout_s=fed.request_timeout_s,
        connect_timeout_s=fed.connect_timeout_s,
    )
    keyring = KeyRing(
        server_name=config.server_name,
        signing_key=signing_key,
        old_keys=load_old_keys(db),
        db=db,
        client=client if fed.enabled else None,
        trusted_key_servers=fed.trusted_key_servers,
        fetch_timeout_s=fed.key_request_timeout_s,
    )
    return keyring, client

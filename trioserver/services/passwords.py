"""Argon2id password hashing (libsodium via pynacl), off the event loop and bounded in memory.

Hashes are stored in the standard `$argon2id$v=19$m=...,t=...,p=...$salt$hash` form, so the cost
can be raised later without invalidating existing hashes.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash
import trio


class PasswordHasher:
    def __init__(self, *, opslimit: int, memlimit_kib: int, concurrency: int) -> None:
        self._opslimit = opslimit
        self._memlimit = memlimit_kib * 1024
        # Each hash holds `memlimit` bytes while it runs: bound how many run at once.
        self._limiter = trio.CapacityLimiter(concurrency)

    def hash_sync(self, password: str) -> str:
        digest: bytes = nacl.pwhash.argon2id.str(
            password.encode("utf-8"), opslimit=self._opslimit, memlimit=self._memlimit
        )
        return digest.decode("ascii")

    @staticmethod
    def verify_sync(stored: str, password: str) -> bool:
        try:
            return bool(nacl.pwhash.verify(stored.encode("ascii"), password.encode("utf-8")))
        except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptPrefixError, ValueError):
            return False

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self.hash_sync, password, limiter=self._limiter)

    async def verify(self, stored: str | None, password: str) -> bool:
        if stored is None:
            # Spend comparable time so a missing account is not distinguishable by timing.
            await trio.to_thread.run_sync(self.hash_sync, password, limiter=self._limiter)
            return False
        return await trio.to_thread.run_sync(
            self.verify_sync, stored, password, limiter=self._limiter
        )

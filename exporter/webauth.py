"""Basic auth for the web config: bcrypt checks of ``basic_auth_users`` with a cache of verified credentials.

A verified password is cached (keyed by an HMAC with a per-process random key of the user, the hash and the
password; at most :data:`AUTH_CACHE_SIZE` entries, least recently used first out), so a scrape does not pay
bcrypt again; wrong passwords and unknown users are never cached, so a flood of them cannot push the good
entries out.  bcrypt runs in a worker thread, one at a time, and concurrent requests with the same credentials
share one computation.  Unknown users are checked against a fixed hash, so timing does not tell which users
exist.  Passwords are cut at 72 bytes, as ``htpasswd -B`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Mapping

from exporter.logs import get_logger

log = get_logger(component="webconfig")

#: A bcrypt hash of nothing anyone knows: what an unknown user's password is checked against.
_DUMMY_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
#: Verified credentials kept at most.
AUTH_CACHE_SIZE = 256


class BasicAuthChecker:
    """bcrypt checks of ``Authorization: Basic`` headers with a cache of verified credentials."""

    def __init__(self, cache_size: int = AUTH_CACHE_SIZE) -> None:
        self.cache_size = cache_size
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._one_at_a_time: asyncio.Semaphore | None = None
        self.bcrypt_calls = 0

    async def check(self, users: Mapping[str, str], authorization: str | None) -> bool:
        """Whether an ``Authorization`` header names a user of ``users`` with the right password."""
        from aiohttp import BasicAuth

        if not authorization:
            return False
        try:
            creds = BasicAuth.decode(authorization, encoding="utf-8")
        except ValueError:
            return False
        hashed = users.get(creds.login)
        known = hashed is not None
        hash_bytes = hashed.encode() if hashed is not None else _DUMMY_HASH
        key = hmac.new(
            self._key, b"\0".join((creds.login.encode(), hash_bytes, creds.password.encode())), hashlib.sha256
        ).digest()
        if known and key in self._verified:
            self._verified.move_to_end(key)
            return True
        task = self._pending.get(key)
        if task is None:
            # one computation per credentials, not tied to the request that started it (a client that
            # disconnects cancels its own wait only)
            task = asyncio.ensure_future(self._bcrypt(creds.password.encode()[:72], hash_bytes))
            self._pending[key] = task
            task.add_done_callback(lambda t: self._settled(key, known, t))
        ok = await asyncio.shield(task)
        return ok and known

    def _settled(self, key: bytes, known: bool, task: asyncio.Future[bool]) -> None:
        del self._pending[key]
        if not task.cancelled() and task.exception() is None and task.result() and known:
            self._verified[key] = None
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)

    async def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        import bcrypt

        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Semaphore(1)
        async with self._one_at_a_time:
            self.bcrypt_calls += 1
            try:
                return await asyncio.to_thread(bcrypt.checkpw, password, hashed)
            except ValueError as exc:  # a hash that looked like bcrypt but is not
                log.error("basic auth: cannot check the password hash", error=str(exc))
                return False

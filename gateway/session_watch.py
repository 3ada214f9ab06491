"""Ending a socket's session when its caller's token expires or is revoked: the socket is
closed with 4401 after an error naming the reason.

Each socket watches its identity (`SessionWatch`); `Sockets` knows the sockets of each user,
so a revocation (`pipelines.revocation`) finds those it ends by one dictionary lookup.
"""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.auth import Identity, token_revoked
from gateway.errors import GatewayError
from pipelines.identity import Caller
from pipelines.revocation import Revocation, Revocations

OnEnd = Callable[[GatewayError], Coroutine[Any, Any, None]]


def expired() -> GatewayError:
    return GatewayError(401, "TOKEN_EXPIRED", "access token has expired; connect with a fresh one")


class Sockets:
    """The watched sockets of one gateway process, by user."""

    def __init__(self, revocations: Revocations) -> None:
        self.revocations = revocations
        self._by_user: dict[str, dict[SessionWatch, Caller]] = {}
        revocations.listeners.append(self.revoked)

    def add(self, watch: "SessionWatch", caller: Caller) -> None:
        self._by_user.setdefault(caller.user_id, {})[watch] = caller

    def discard(self, watch: "SessionWatch", caller: Caller) -> None:
        mine = self._by_user.get(caller.user_id, {})
        mine.pop(watch, None)
        if not mine:
            self._by_user.pop(caller.user_id, None)

    def revoked(self, revocation: Revocation) -> None:
        for watch, caller in list(self._by_user.get(revocation.user_id, {}).items()):
            if self.revocations.refuses(caller):
                watch.end(token_revoked())


class SessionWatch:
    """Runs `on_end` with the reason when a socket's caller's token expires or is revoked;
    watching a new identity forgets the old one."""

    def __init__(self, sockets: Sockets) -> None:
        self.sockets = sockets
        self._caller: Caller | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None  # not cancelled by `stop`: it closes
        self._on_end: OnEnd | None = None

    def watch(self, identity: Identity, on_end: OnEnd) -> None:
        self.stop()
        self._on_end, self._caller = on_end, identity.caller
        if self._caller is not None:
            self.sockets.add(self, self._caller)
        if identity.expires_at is not None:
            self._expiry = asyncio.create_task(self._expire(identity.expires_at))

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._caller is not None:
            self.sockets.discard(self, self._caller)
            self._caller = None

    def end(self, error: GatewayError) -> None:
        on_end = self._on_end
        self.stop()
        if on_end is not None and self._ending is None:
            self._ending = asyncio.create_task(on_end(error))

    async def _expire(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        self._expiry = None  # ending: not to be cancelled by `stop`
        self.end(expired())

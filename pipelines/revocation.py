"""Revoked access tokens: by session (signed out, a reused refresh token) and by user
generation (password changed, access reduced, user disabled).

An access token carries its session (`sid`) and its user's generation when it was issued
(`gen`). The auth service records `SessionRevoked {sessionId, userId, revokedAt}` and
`UserTokensRevoked {userId, generation, revokedAt}`: a token is revoked when its session is,
or when its generation is below its user's. An entry lives as long as a token issued before
it may: `JWT_EXPIRATION` from the revocation.

Every process keeps the list in memory (`Revocations`), fed by those events over the bus and
loaded from Redis when it starts; auth keeps it in Redis (`RevocationStore`), where the gateway
checks it in the one round trip it makes per request. The SDK knows auth's events by name, and
never imports auth.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipelines.errors import Unauthorized
from pipelines.eventfeed import EventFeed
from pipelines.identity import Caller
from pipelines.token_issuer import TOKEN_ISSUER
from pipelines.topology import event_routing_key

SESSION_REVOKED = "SessionRevoked"
TOKENS_REVOKED = "UserTokensRevoked"
ROUTING_KEYS = [event_routing_key(TOKEN_ISSUER, name) for name in (SESSION_REVOKED, TOKENS_REVOKED)]
SESSION, USER = "session", "user"
SWEEP_EVERY = 10.0  # seconds between forgetting the expired entries kept in memory
log = logging.getLogger("banyan.revocation")

# KEYS[1]: an entry; ARGV[1]: its generation (1 for a session), ARGV[2]: when it expires
# (epoch seconds). A user's generation never goes back (events may arrive out of order).
REMEMBER = """
if tonumber(ARGV[1]) >= tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
"""


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str  # SESSION or USER
    subject: str  # the session id, or the user id
    user_id: str
    generation: int  # tokens of the user below it are revoked (1 for a session)
    until: float  # epoch seconds after which no token it revokes is still valid

    @classmethod
    def of(cls, event_type: str, data: Any, lifetime: float) -> "Revocation | None":
        """The revocation an auth event records (None for another event or a malformed one)."""
        if not isinstance(data, dict) or not isinstance(user_id := data.get("userId"), str):
            return None
        at = data.get("revokedAt")
        until = (at if isinstance(at, int) and at > 0 else time.time()) + lifetime
        if event_type == SESSION_REVOKED and isinstance(session := data.get("sessionId"), str):
            return cls(SESSION, session, user_id, 1, until)
        generation = data.get("generation")
        if event_type == TOKENS_REVOKED and isinstance(generation, int):
            return cls(USER, user_id, user_id, generation, until)
        return None

    def key(self, prefix: str) -> str:
        return entry_key(prefix, self.kind, self.subject)


def entry_key(prefix: str, kind: str, subject: str) -> str:
    return f"{prefix}:revoked:{kind}:{subject}"


def caller_keys(prefix: str, caller: Caller) -> list[str]:
    """The entries that would revoke `caller`'s token: its session's and its user's."""
    return [entry_key(prefix, SESSION, caller.session_id), entry_key(prefix, USER, caller.user_id)]


class Revocations:
    """The revocations of the last token lifetime, in memory: checking one is two lookups."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._entries: dict[tuple[str, str], tuple[int, float]] = {}
        self._next_sweep = 0.0
        self.listeners: list[Callable[[Revocation], None]] = []  # told of each new one

    def refuses(self, caller: Caller) -> bool:
        if caller.session_id and (SESSION, caller.session_id) in self._entries:
            return True
        user = self._entries.get((USER, caller.user_id))
        return user is not None and caller.generation < user[0]

    def add(self, revocation: Revocation) -> None:
        now = time.time()
        if revocation.until <= now:
            return
        if now >= self._next_sweep:  # not at every add: sign-outs can come by the hundred
            self._next_sweep = now + SWEEP_EVERY
            for key in [k for k, (_, until) in self._entries.items() if until <= now]:
                del self._entries[key]
        key = (revocation.kind, revocation.subject)
        known = self._entries.get(key, (0, 0.0))
        if revocation.generation >= known[0]:
            self._entries[key] = (revocation.generation, max(revocation.until, known[1]))

    async def on_event(self, event_type: str, data: Any, headers: Any) -> None:
        """An `EventFeed` listener: keep the revocation an event records."""
        revocation = Revocation.of(event_type, data, self.lifetime)
        if revocation is not None:
            self.add(revocation)
            for listener in self.listeners:
                listener(revocation)

    async def load(self, store: "RevocationStore") -> None:
        """Take in what Redis holds (revocations from before this process started)."""
        for revocation in await store.all(self.lifetime):
            self.add(revocation)


class RevocationStore:
    """The revocation list in Redis, each entry expiring with the last token it revokes."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._remember = client.register_script(REMEMBER)

    async def remember(self, revocation: Revocation) -> None:
        until = int(revocation.until) + 1
        await self._remember(
            keys=[revocation.key(self.prefix)], args=[revocation.generation, until]
        )

    async def all(self, lifetime: float) -> list[Revocation]:
        pattern = entry_key(self.prefix, "*", "*")
        keys = [key async for key in self.client.scan_iter(match=pattern, count=1000)]
        values = await self.client.mget(keys) if keys else []
        until = time.time() + lifetime  # at most: an entry's own expiry is sooner
        found = []
        for key, value in zip(keys, values, strict=True):
            kind, _, subject = key.decode().removeprefix(f"{self.prefix}:revoked:").partition(":")
            if value is not None and kind in (SESSION, USER):
                user_id = subject if kind == USER else ""
                found.append(Revocation(kind, subject, user_id, int(value), until))
        return found


REVOKED = (
    "access token has been revoked (signed out, password changed, access reduced or user "
    "disabled): refresh it or sign in again"
)


class TokenRevoked(Unauthorized):
    def __init__(self) -> None:
        super().__init__(REVOKED)


async def follow(
    revocations: Revocations, feed: EventFeed, client: aioredis.Redis, prefix: str
) -> None:
    """Keep `revocations` current from a started `feed`: the events from now on, then what
    Redis holds from before. Without Redis, revocations made before this start are unknown
    here (logged)."""
    feed.listeners.append(revocations.on_event)
    for key in ROUTING_KEYS:
        await feed.bind(key)
    try:
        await revocations.load(RevocationStore(client, prefix))
    except RedisError as exc:
        log.warning("revocations from before this start are unknown (Redis: %s)", exc)

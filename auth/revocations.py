"""Ending access tokens before they expire (`pipelines.revocation`): those of one session, or
every one a user was issued before a change (password, reduced access, disabled).

The entry is written to Redis once the event is committed, before the answer, so that the
request after the answer is refused everywhere; and again by the `auth-revocations`
subscriber from the event, so that an entry a Redis outage lost comes back with Redis.
Meanwhile every process refuses the token from the event itself. (Written before the commit,
an entry of a command that then failed would refuse the user's new tokens too.)
"""

import time

from redis.exceptions import RedisError

from auth.domain import Session, User
from auth.events import SessionEnd, SessionRevoked, TokensEnd, UserTokensRevoked
from auth.resources import resources
from pipelines import Context
from pipelines.revocation import Revocation


def end_session(ctx: Context, session: Session, reason: SessionEnd) -> None:
    """Its refresh tokens and its access tokens stop working."""
    event = SessionRevoked(
        session_id=session.id, user_id=session.user_id, reason=reason, revoked_at=now()
    )
    session.record(event)
    ctx.after_commit(lambda: keep(event))


def revoke_tokens(ctx: Context, user: User, reason: TokensEnd) -> None:
    """The user's access tokens issued until now stop working."""
    event = UserTokensRevoked(
        user_id=user.id, generation=user.generation + 1, reason=reason, revoked_at=now()
    )
    user.record(event)
    ctx.after_commit(lambda: keep(event))


def now() -> int:
    return int(time.time())


async def remember(event: SessionRevoked | UserTokensRevoked, ctx: Context) -> None:
    """The `auth-revocations` subscriber: without Redis, retried until it answers."""
    try:
        await keep(event)
    except RedisError as exc:  # an outage, not a bad event: never dead-lettered
        raise ConnectionError(f"Redis refused a revocation: {exc}") from exc


async def keep(event: SessionRevoked | UserTokensRevoked) -> None:
    """Keep the entry `event` records in Redis."""
    codec, store = resources().tokens, resources().revocations
    data = event.model_dump(mode="json")
    revocation = Revocation.of(event.message_type(), data, codec.expiration)
    if revocation is not None:
        await store.remember(revocation)

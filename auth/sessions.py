"""Signing in and out: sessions of rotating refresh tokens, and theft detection.

A refresh token works once: refreshing replaces it. Presenting a replaced token again means
two parties hold the session, so the whole session (every token of it) is revoked.
"""

import hmac
import time
import uuid
from dataclasses import replace

from auth.access import caller_now
from auth.contracts import (
    Authenticate,
    AuthTokens,
    RefreshToken,
    RevokeToken,
    RevokeTokenResult,
    TokenUser,
)
from auth.domain import EmailClaim, Session, User
from auth.errors import AccountDisabled, InvalidCredentials, RefreshTokenExpired
from auth.events import SessionEnd, SessionRefreshed, SessionStarted
from auth.passwords import NO_CREDENTIAL, load_hash, verify_password
from auth.refresh_tokens import (
    TTL_SECONDS,
    new_refresh_token,
    next_refresh_token,
    session_of,
    token_hash,
)
from auth.resources import resources
from auth.revocations import end_session
from pipelines import Context
from pipelines.errors import Unauthorized

NOBODY = "-"  # a user id no user has


async def authenticate(command: Authenticate, ctx: Context) -> AuthTokens:
    throttle, address = resources().throttle, ctx.client_address
    await throttle.check(command.email, address)
    # The same reads and the same hashing whether or not the email exists; and from the
    # aggregates, not a read model, so a change of password applies at once.
    claim = await ctx.load(EmailClaim, command.email)
    user = await ctx.load(User, claim.user_id or NOBODY)
    stored = await load_hash(ctx.store.pool, user.credential_id or NO_CREDENTIAL)
    matched = await verify_password(stored, command.password)
    if not (user.exists and matched):
        await throttle.failed(command.email, address)
        raise InvalidCredentials()
    await throttle.succeeded(command.email, address)
    if user.disabled:
        raise AccountDisabled()
    session = ctx.create(Session, uuid.uuid4().hex)
    token = new_refresh_token(session.id)
    session.record(
        SessionStarted(
            session_id=session.id,
            user_id=user.id,
            credential_id=user.credential_id,
            token_hash=token_hash(token),
            expires_at=int(time.time()) + TTL_SECONDS,
        )
    )
    return await issue_tokens(ctx, user, session.id, token)


async def refresh_token(command: RefreshToken, ctx: Context) -> AuthTokens:
    session = await find_session(ctx, command.refresh_token)
    if session is None:
        raise Unauthorized("invalid refresh token")
    presented, now = token_hash(command.refresh_token), time.time()
    just_replaced = just_replaced_by_now(session, presented, now)
    if presented in session.used_hashes and not just_replaced:
        await end_now(ctx, session, "token-reused")
        raise Unauthorized("refresh token was already used: its session is revoked")
    if not just_replaced and not hmac.compare_digest(presented, session.token_hash):
        raise Unauthorized("invalid refresh token")
    if session.expires_at <= now:
        raise RefreshTokenExpired("refresh token has expired")
    user = await ctx.load(User, session.user_id)
    if user.credential_id != session.credential_id:
        await end_now(ctx, session, "password-changed")
        raise Unauthorized("the password has changed since this session began")
    if user.disabled:
        await end_now(ctx, session, "user-disabled")
        raise AccountDisabled()
    token = next_refresh_token(resources().refresh_key, command.refresh_token)
    if not just_replaced:
        session.record(
            SessionRefreshed(
                session_id=session.id, token_hash=token_hash(token), refreshed_at=int(now)
            )
        )
    return await issue_tokens(ctx, user, session.id, token)


def just_replaced_by_now(session: Session, presented: str, now: float) -> bool:
    """`presented` is the token the last refresh replaced, within the grace window: another
    tab refreshing at the same moment, which gets the same new pair, not a revoked session."""
    grace = resources().refresh_grace
    return session.used_hashes[-1:] == [presented] and now - session.refreshed_at <= grace


async def revoke_token(command: RevokeToken, ctx: Context) -> RevokeTokenResult:
    session = await find_session(ctx, command.refresh_token)
    presented = token_hash(command.refresh_token)
    if session is None or presented not in (session.token_hash, *session.used_hashes):
        return RevokeTokenResult(revoked=False)
    end_session(ctx, session, "signed-out")
    return RevokeTokenResult(revoked=True)


async def find_session(ctx: Context, token: str) -> Session | None:
    """The live session a refresh token names (None if unknown, malformed or revoked)."""
    session_id = session_of(token)
    if session_id is None:
        return None
    session = await ctx.load(Session, session_id)
    return session if session.exists and not session.revoked else None


async def end_now(ctx: Context, session: Session, reason: SessionEnd) -> None:
    """Revoke and append at once: the handler then refuses, and a refusal appends nothing."""
    end_session(ctx, session, reason)
    await ctx.store.append(
        ctx.new_events(), correlation_id=ctx.correlation_id, causation_id=ctx.message_id
    )
    await ctx.committed()


async def issue_tokens(ctx: Context, user: User, session_id: str, refresh: str) -> AuthTokens:
    """An access token of the session with the user's permissions and generation as they are
    now, and `refresh`."""
    caller = replace(await caller_now(ctx, user), session_id=session_id)
    codec = resources().tokens
    return AuthTokens(
        access_token=codec.issue(caller),
        refresh_token=refresh,
        expires_in=codec.expiration,
        user=TokenUser(id=user.id, email=user.email, permissions=sorted(caller.permissions)),
    )

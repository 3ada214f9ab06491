"""Refresh tokens: `{session id}.{random secret}`, kept only as their SHA-256."""

import hashlib
import re
import secrets

TTL_SECONDS = 7 * 24 * 3600  # from sign-in; rotating keeps the session's expiry
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


def new_refresh_token(session_id: str) -> str:
    return f"{session_id}.{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_of(token: str) -> str | None:
    """The session a well-formed token belongs to (None for anything else)."""
    session_id, dot, secret = token.partition(".")
    return session_id if dot and secret and SESSION_ID.match(session_id) else None

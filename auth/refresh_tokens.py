"""Refresh tokens: `{session id}.{secret}`, kept only as their SHA-256.

A sign-in's first token is random; each next one is derived from the token it replaces with a
key only auth holds, so two refreshes of one token (two tabs at once) get the same new token.
"""

import base64
import hashlib
import hmac
import re
import secrets

TTL_SECONDS = 7 * 24 * 3600  # from sign-in; rotating keeps the session's expiry
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


def new_refresh_token(session_id: str) -> str:
    return f"{session_id}.{secrets.token_urlsafe(32)}"


def next_refresh_token(key: bytes, replaced: str) -> str:
    """The token that replaces `replaced` (the same every time for the same one)."""
    digest = hmac.new(key, replaced.encode(), hashlib.sha256).digest()
    session_id = replaced.partition(".")[0]
    return f"{session_id}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_of(token: str) -> str | None:
    """The session a well-formed token belongs to (None for anything else)."""
    session_id, dot, secret = token.partition(".")
    return session_id if dot and secret and SESSION_ID.match(session_id) else None

"""What the auth handlers share in one process: the token codec, the sign-in throttle and the
revocation list.

Handlers receive only their message and context, so these are built once per process from
the process settings (`faststream run auth:app` runs one instance per process).
"""

import hashlib
from dataclasses import dataclass
from functools import cache

from auth.throttle import LoginThrottle
from pipelines.identity import TokenCodec
from pipelines.redisclient import connect_redis
from pipelines.revocation import RevocationStore
from pipelines.settings import get_settings


@dataclass(frozen=True)
class AuthResources:
    tokens: TokenCodec
    throttle: LoginThrottle
    refresh_key: bytes  # derives each next refresh token (`refresh_tokens`)
    refresh_grace: float  # seconds a replaced refresh token still gets its successor
    revocations: RevocationStore


@cache
def resources() -> AuthResources:
    settings = get_settings()
    redis = connect_redis(settings)
    return AuthResources(
        tokens=TokenCodec(settings),
        throttle=LoginThrottle(
            redis,
            settings.cache_prefix,
            settings.signin_free_failures,
            settings.signin_max_delay,
        ),
        refresh_key=hashlib.sha256(
            b"refresh-token:" + (settings.jwt_private_key or settings.jwt_secret).encode()
        ).digest(),
        refresh_grace=settings.refresh_token_grace,
        revocations=RevocationStore(redis, settings.cache_prefix),
    )

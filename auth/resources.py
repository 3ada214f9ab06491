"""What the auth handlers share in one process: the token codec and the sign-in throttle.

Handlers receive only their message and context, so these are built once per process from
the process settings (`faststream run auth:app` runs one instance per process).
"""

from dataclasses import dataclass
from functools import cache

from auth.throttle import LoginThrottle
from pipelines.identity import TokenCodec
from pipelines.redisclient import connect_redis
from pipelines.settings import get_settings


@dataclass(frozen=True)
class AuthResources:
    tokens: TokenCodec
    throttle: LoginThrottle


@cache
def resources() -> AuthResources:
    settings = get_settings()
    return AuthResources(
        tokens=TokenCodec(settings),
        throttle=LoginThrottle(
            connect_redis(settings),
            settings.cache_prefix,
            settings.signin_free_failures,
            settings.signin_max_delay,
        ),
    )

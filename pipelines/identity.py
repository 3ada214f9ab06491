"""The caller of a message, carried as a signed token that every receiving service verifies.

A bare user id in a header could be forged by anyone on the bus; a token signed with the
platform key (HS256 `JWT_SECRET`, or RS256 with `JWT_PUBLIC_KEY`) cannot.
"""

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from pipelines.errors import Unauthorized
from pipelines.settings import Settings


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    email: str = ""
    name: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)
    roles: tuple[str, ...] = ()

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def has_all(self, permissions: Iterable[str]) -> bool:
        return self.permissions.issuperset(permissions)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> "Caller":
        return cls(
            user_id=str(claims["sub"]),
            email=claims.get("email", ""),
            name=claims.get("name", ""),
            permissions=frozenset(claims.get("permissions", ())),
            roles=tuple(claims.get("roles", ())),
        )


class TokenCodec:
    """Signs and verifies access tokens with the configured algorithm and keys."""

    def __init__(self, settings: Settings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.expiration = settings.jwt_expiration
        if self.algorithm == "RS256":
            self._signing_key: Any = settings.jwt_private_key
            self._verifying_key: Any = settings.jwt_public_key
        else:
            self._signing_key = self._verifying_key = settings.jwt_secret

    def issue(self, caller: Caller, ttl: int | None = None, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "sub": caller.user_id,
            "email": caller.email,
            "name": caller.name,
            "permissions": sorted(caller.permissions),
            "roles": list(caller.roles),
            "iat": now,
            "exp": now + (ttl or self.expiration),
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm)

    def verify(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            err = Unauthorized("access token has expired")
            err.code = "TOKEN_EXPIRED"
            raise err from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid access token: {exc}") from exc
        return Caller.from_claims(claims)

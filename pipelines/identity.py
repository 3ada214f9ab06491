"""The caller of a message, carried as a signed token that every receiving service verifies.

A bare user id in a header could be forged by anyone on the bus; a token signed with the
platform key (HS256 `JWT_SECRET`, or RS256 with `JWT_PUBLIC_KEY`) cannot.
"""

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from pipelines.errors import TokenExpired, Unauthorized
from pipelines.settings import Settings

VERIFIED_CACHE_SIZE = 10_000  # tokens remembered per process (cleared when full)
# A service credential names this audience: it is traded with auth for access tokens and is
# never accepted as one (a token with an audience fails every access-token check).
CREDENTIAL_AUDIENCE = "banyan:service-credential"
SERVICE_PREFIX = "service:"  # the subject of a service's own identity: service:{name}


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    email: str = ""
    name: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)
    roles: tuple[str, ...] = ()
    # which sign-in the token belongs to, and the user's generation when it was issued: a
    # revocation names either (`pipelines.revocation`); tokens of services have neither
    session_id: str = ""
    generation: int = 0

    def missing(self, required: Iterable[str]) -> list[str]:
        """The `required` permissions this caller lacks: the one rule the gateway and every
        service apply. There is no wildcard: every caller, services included, holds a list."""
        return sorted(set(required) - self.permissions)

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
            session_id=str(claims.get("sid", "")),
            generation=int(claims.get("gen", 0)),
        )


def session_claims(caller: Caller) -> dict[str, Any]:
    """`sid` and `gen` of a user's token (none for a caller outside a session)."""
    return {"sid": caller.session_id, "gen": caller.generation} if caller.session_id else {}


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for anything else."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


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
        self._verified: dict[str, tuple[Caller, float]] = {}
        self.key_id = rsa_key_id(self._verifying_key) if self.algorithm == "RS256" else None

    @property
    def can_sign(self) -> bool:
        """Whether this process signs tokens itself: with HS256 every process can; with RS256
        only the one holding the private key (auth)."""
        return bool(self._signing_key)

    def issue(self, caller: Caller, ttl: int | None = None, **extra: Any) -> str:
        claims = {
            "sub": caller.user_id,
            "email": caller.email,
            "name": caller.name,
            "permissions": sorted(caller.permissions),
            "roles": list(caller.roles),
            **session_claims(caller),
            **extra,
        }
        return self._sign(claims, ttl or self.expiration)

    def _sign(self, claims: dict[str, Any], ttl: int) -> str:
        """`claims` signed, issued now, expiring in `ttl` seconds, with a unique id."""
        now = int(time.time())
        claims = {"iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, **claims}
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers=headers)

    def verify(self, token: str) -> Caller:
        """The caller a token names, checked once and then remembered until it expires."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Caller, float]:
        """The caller a token names, and when the token expires (epoch seconds)."""
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known
        verified = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = verified
        return verified

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("access token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid access token: {exc}") from exc
        try:
            return Caller.from_claims(claims), float(claims["exp"])
        except (TypeError, ValueError) as exc:  # signed, yet claims of the wrong type
            raise Unauthorized(f"invalid access token claims: {exc}") from exc

    def issue_credential(self, service: str, permissions: Iterable[str], days: int) -> str:
        """A credential that lets `service` obtain access tokens from auth for `permissions`
        (and no others), for `days` days: `banyan services credential NAME` prints one."""
        claims = {
            "sub": SERVICE_PREFIX + service,
            "aud": CREDENTIAL_AUDIENCE,
            "permissions": sorted(permissions),
        }
        return self._sign(claims, days * 86400)

    def verify_credential(self, credential: str) -> Caller:
        """The service a credential names and the permissions it grants."""
        try:
            claims = self._decode(credential, audience=CREDENTIAL_AUDIENCE)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid service credential: {exc}") from exc
        if not str(claims["sub"]).startswith(SERVICE_PREFIX):
            raise Unauthorized("invalid service credential: it names no service")
        return Caller.from_claims(claims)

    def _decode(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of a token this codec's key signed, unexpired, for `audience`."""
        required = ["sub", "exp", "aud"] if audience else ["sub", "exp"]
        claims: dict[str, Any] = jwt.decode(
            token,
            self._verifying_key,
            algorithms=[self.algorithm],
            audience=audience,
            options={"require": required},
        )
        return claims

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify this codec's tokens (RFC 7517); none for HS256."""
        if self.algorithm != "RS256" or not self._verifying_key:
            return {"keys": []}
        jwk = public_jwk(self._verifying_key)
        return {"keys": [{**jwk, "kid": self.key_id, "use": "sig", "alg": "RS256"}]}


def public_jwk(public_key_pem: str) -> dict[str, Any]:
    key = RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(public_key_pem)
    return dict(RSAAlgorithm.to_jwk(key, as_dict=True))


def rsa_key_id(public_key_pem: str) -> str | None:
    """The RFC 7638 thumbprint of an RSA public key: stable, so verifiers can cache by it."""
    if not public_key_pem:
        return None
    jwk = public_jwk(public_key_pem)
    members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(members.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

"""Layer-1 authorization: who is calling, and may they call this contract at all.

The verified bearer token is forwarded on the bus as-is (services verify it again). In
development mode (`DEVELOPMENT_AUTH_ENABLED=true`, never with `ENVIRONMENT=production`)
`X-Dev-User-Id` and `X-Dev-Permissions` stand in for a token: the gateway signs a short-lived
one for them, so services still only ever trust signed identities.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import GatewayError
from pipelines.errors import Unauthorized
from pipelines.identity import Caller, TokenCodec, bearer_token
from pipelines.registry import ContractInfo
from pipelines.revocation import REVOKED, Revocations
from pipelines.settings import Settings

log = logging.getLogger("banyan.gateway.auth")
DEV_TOKEN_TTL = 60


@dataclass(frozen=True)
class Identity:
    caller: Caller | None
    token: str | None  # what travels on the bus in x-user-token
    # when the caller's own token stops being valid (epoch seconds), if they sent one
    expires_at: float | None = None


ANONYMOUS = Identity(None, None)


def development_auth(settings: Settings) -> bool:
    if not settings.development_auth_enabled:
        return False
    if settings.environment == "production":
        log.critical(
            "DEVELOPMENT_AUTH_ENABLED=true is refused with ENVIRONMENT=production: "
            "X-Dev-* headers are ignored"
        )
        return False
    log.warning("development authentication is ON: X-Dev-User-Id headers are trusted")
    return True


def token_revoked() -> GatewayError:
    return GatewayError(401, "INVALID_TOKEN", REVOKED)


class Authenticator:
    """Verifies tokens, and refuses those this process knows are revoked (each request is
    also checked against Redis, in `admission`, which knows them first)."""

    def __init__(self, settings: Settings, revocations: Revocations) -> None:
        self.codec = TokenCodec(settings)
        self.development = development_auth(settings)
        self.revocations = revocations

    def identify(self, headers: Mapping[str, str]) -> Identity:
        authorization = headers.get("authorization")
        if authorization:
            token = bearer_token(authorization)
            if token is None:
                raise GatewayError(401, "INVALID_TOKEN", "use 'Authorization: Bearer <token>'")
            return self._verified(token)
        if self.development and headers.get("x-dev-user-id"):
            return self._development(headers)
        return ANONYMOUS

    def _verified(self, token: str) -> Identity:
        try:
            caller, expires_at = self.codec.verify_until(token)
        except Unauthorized as exc:
            raise GatewayError(401, exc.code, exc.message) from exc
        if self.revocations.refuses(caller):
            raise token_revoked()
        return Identity(caller, token, expires_at)

    def _development(self, headers: Mapping[str, str]) -> Identity:
        permissions = {p.strip() for p in headers.get("x-dev-permissions", "").split(",")}
        caller = Caller(headers["x-dev-user-id"], permissions=frozenset(permissions - {""}))
        return Identity(caller, self.codec.issue(caller, ttl=DEV_TOKEN_TTL))

    @staticmethod
    def authorize(identity: Identity, contract: ContractInfo) -> None:
        if contract.is_public:
            return
        if identity.caller is None:
            raise GatewayError(401, "NO_AUTH_HEADER", "this operation needs a bearer token")
        missing = identity.caller.missing(contract.required_permissions)
        if missing:
            raise GatewayError(
                403,
                "INSUFFICIENT_PERMISSIONS",
                f"{contract.message_type} requires {', '.join(contract.required_permissions)}",
                {"required": contract.required_permissions, "missing": missing},
            )

    @staticmethod
    def may_see(caller: Caller | None, contract: ContractInfo) -> bool:
        """Whether a caller may call a command or query at all (their GraphQL schema)."""
        if contract.is_public:
            return True
        return caller is not None and caller.has_all(contract.required_permissions)

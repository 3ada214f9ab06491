"""A service's own identity on the bus: a short-lived token holding exactly the permissions of
the contracts it declares in `calls=`.

Where the process can sign (HS256, or the RS256 private key in auth) it signs the token itself.
Elsewhere (RS256) it trades its `SERVICE_CREDENTIAL` with auth for one: the credential is
signed by auth's key for one service and a fixed set of permissions, so a service can never
give itself more than an operator granted it.
"""

import asyncio
import time
from typing import Annotated

from pydantic import Field

from pipelines.calls import Calls
from pipelines.contracts import Command, Model, Sensitive
from pipelines.errors import Unauthorized
from pipelines.identity import SERVICE_PREFIX, Caller, TokenCodec
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.token_issuer import TOKEN_ISSUER

ACT_FOR_USERS = "auth:act-for-users"
MAX_CREDENTIAL_CHARS = 8192
MAX_USER_TOKENS = 1000  # users' tokens kept per process (cleared when full)
_MINT = "banyan services credential {service}, run where JWT_PRIVATE_KEY is"


class IssueServiceToken(Command, internal=True):
    """Trade a service credential for an access token of the permissions it grants (auth)."""

    credential: Annotated[str, Sensitive, Field(min_length=1, max_length=MAX_CREDENTIAL_CHARS)]


class ActForUser(Command, internal=True, permissions=[ACT_FOR_USERS]):
    """An access token for `user_id` with that user's current permissions, naming the calling
    service as its actor (auth): how a flow acts for the user whose event started it."""

    user_id: Annotated[str, Field(min_length=1, max_length=128)]


class ServiceToken(Model):
    access_token: Annotated[str, Sensitive]
    expires_in: int  # seconds


class ServiceIdentity:
    def __init__(self, calls: Calls, settings: Settings, tokens: TokenCodec) -> None:
        self.calls = calls
        self.settings = settings
        self.tokens = tokens
        self._token: tuple[str, float] | None = None  # the token, and when to renew it
        self._renewing = asyncio.Lock()
        self._users: dict[str, tuple[str, float]] = {}  # user id -> token, when to renew it

    @property
    def caller(self) -> Caller:
        return Caller(SERVICE_PREFIX + self.calls.service, permissions=self.calls.permissions)

    async def token(self, rpc: RpcClient | None) -> str:
        """The current token, renewed once half its lifetime has passed (`rpc` reaches auth)."""
        if self._token is not None and time.monotonic() <= self._token[1]:
            return self._token[0]
        async with self._renewing:
            if self._token is None or time.monotonic() > self._token[1]:
                token, ttl = await self._new_token(rpc)
                self._token = (token, time.monotonic() + ttl / 2)
            return self._token[0]

    async def acting_for(self, user_id: str, rpc: RpcClient | None) -> str:
        """A token of `user_id` (their permissions now, this service as actor) from auth;
        refused unless this service declares ActForUser in its calls."""
        known = self._users.get(user_id)
        if known is not None and time.monotonic() <= known[1]:
            return known[0]
        request = ActForUser(user_id=user_id)
        self.calls.check(request)
        issued = await self._ask_auth(rpc, request, await self.token(rpc))
        if len(self._users) >= MAX_USER_TOKENS:
            self._users.clear()
        self._users[user_id] = (issued.access_token, time.monotonic() + issued.expires_in / 2)
        return issued.access_token

    async def _new_token(self, rpc: RpcClient | None) -> tuple[str, int]:
        if self.tokens.can_sign:
            ttl = self.settings.jwt_expiration
            return self.tokens.issue(self.caller, ttl=ttl), ttl
        credential, _ = self._checked_credential()
        issued = await self._ask_auth(rpc, IssueServiceToken(credential=credential), None)
        return issued.access_token, issued.expires_in

    async def _ask_auth(
        self, rpc: RpcClient | None, request: Command, token: str | None
    ) -> ServiceToken:
        assert rpc is not None, "the service instance is not started"
        timeout = self.settings.command_timeout
        reply = await rpc.send(TOKEN_ISSUER, request, token=token, timeout=timeout)
        return ServiceToken.model_validate(reply.result())

    def credential_problem(self) -> str | None:
        """Why this process would not get a token for all of its calls= (None: it would), as
        a line that says what to do; checked at start, with the public key alone."""
        if self.tokens.can_sign:
            return None
        try:
            _, granted = self._checked_credential()
        except Unauthorized as exc:
            return exc.message
        if missing := granted.missing(self.calls.permissions):
            service = self.calls.service
            return (
                f"SERVICE_CREDENTIAL of {service} lacks {', '.join(missing)}, which its "
                f"calls= need ({_MINT.format(service=service)})"
            )
        return None

    def _checked_credential(self) -> tuple[str, Caller]:
        """This service's credential and what it grants, if it is one (valid, and this
        service's). One lacking some permissions still serves the calls it covers (a rolling
        deploy adding a call): receivers refuse the others, naming what is missing."""
        service, credential = self.calls.service, self.settings.service_credential
        mint = _MINT.format(service=service)
        if credential is None:
            raise Unauthorized(
                f"{service} cannot sign its own token (RS256 without the private key): "
                f"set SERVICE_CREDENTIAL ({mint})"
            )
        text = credential.get_secret_value()
        try:
            granted = self.tokens.verify_credential(text)
        except Unauthorized as exc:
            raise Unauthorized(f"SERVICE_CREDENTIAL of {service}: {exc.message} ({mint})") from exc
        if granted.user_id != SERVICE_PREFIX + service:
            raise Unauthorized(
                f"SERVICE_CREDENTIAL is {granted.user_id}'s, not {service}'s ({mint})"
            )
        return text, granted

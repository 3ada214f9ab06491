"""What the auth service records. No event carries a password, a token or a password hash.

None declares an audience: they are never delivered to clients (nor would the gateway
deliver them if one did).
"""

from typing import Annotated, Literal

from pydantic import Field

from pipelines import Event


class EmailClaimed(Event, service="auth"):
    email: str
    user_id: str


class UserCreated(Event, service="auth"):
    user_id: str
    email: str
    name: str
    roles: list[str]
    granted_permissions: Annotated[list[str], Field(alias="permissions")]
    credential_id: str  # the row of auth_credentials holding the password hash


class PasswordChanged(Event, service="auth"):
    user_id: str
    credential_id: str


class RoleCreated(Event, service="auth"):
    role: str
    role_description: Annotated[str, Field(alias="description")]
    role_permissions: Annotated[list[str], Field(alias="permissions")]


class RoleAssigned(Event, service="auth"):
    user_id: str
    role: str


class RoleUnassigned(Event, service="auth"):
    user_id: str
    role: str


class PermissionGranted(Event, service="auth"):
    user_id: str
    permission: str


class PermissionRevoked(Event, service="auth"):
    user_id: str
    permission: str


class SessionStarted(Event, service="auth"):
    session_id: str
    user_id: str
    credential_id: str  # the password it was signed in with: changing it ends the session
    token_hash: str  # SHA-256 of the refresh token
    expires_at: int  # epoch seconds; rotation keeps it


class SessionRefreshed(Event, service="auth"):
    session_id: str
    token_hash: str
    refreshed_at: int = 0  # epoch seconds (0 in events recorded before it was kept)


SessionEnd = Literal["signed-out", "token-reused", "password-changed", "user-disabled"]
TokensEnd = Literal["password-changed", "access-reduced", "user-disabled"]


class SessionRevoked(Event, service="auth"):
    """The session's refresh tokens and access tokens stop working (`pipelines.revocation`)."""

    session_id: str
    user_id: str
    reason: SessionEnd
    revoked_at: int = 0  # epoch seconds (0 in events recorded before it was kept)


class UserTokensRevoked(Event, service="auth"):
    """Every access token of the user issued before it (`gen` below `generation`) stops
    working (`pipelines.revocation`); their sessions go on unless another event ends them."""

    user_id: str
    generation: int  # the user's tokens are issued with it from now on
    reason: TokensEnd
    revoked_at: int  # epoch seconds


class UserDisabled(Event, service="auth"):
    user_id: str


class UserEnabled(Event, service="auth"):
    user_id: str


EVENTS = (
    EmailClaimed,
    UserCreated,
    PasswordChanged,
    RoleCreated,
    RoleAssigned,
    RoleUnassigned,
    PermissionGranted,
    PermissionRevoked,
    SessionStarted,
    SessionRefreshed,
    SessionRevoked,
    UserTokensRevoked,
    UserDisabled,
    UserEnabled,
)

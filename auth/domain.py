"""The auth aggregates: each one's state is a fold of its own events."""

from pydantic import Field

from auth.events import (
    EmailClaimed,
    PasswordChanged,
    PermissionGranted,
    PermissionRevoked,
    RoleAssigned,
    RoleCreated,
    RoleUnassigned,
    SessionRefreshed,
    SessionRevoked,
    SessionStarted,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserTokensRevoked,
)
from pipelines import Aggregate, applies


class EmailClaim(Aggregate):
    """Keyed by the normalised email: appending its first event twice is impossible."""

    user_id: str = ""

    @applies(EmailClaimed)
    def _claimed(self, event: EmailClaimed) -> None:
        self.user_id = event.user_id


class User(Aggregate):
    email: str = ""
    name: str = ""
    roles: list[str] = Field(default_factory=list)
    permissions: list[str] = Field(default_factory=list)  # granted directly
    credential_id: str = ""
    generation: int = 0  # its access tokens carry it; those below a revoked one are refused
    disabled: bool = False

    @applies(UserCreated)
    def _created(self, event: UserCreated) -> None:
        self.email, self.name = event.email, event.name
        self.roles, self.permissions = list(event.roles), list(event.granted_permissions)
        self.credential_id = event.credential_id

    @applies(PasswordChanged)
    def _password_changed(self, event: PasswordChanged) -> None:
        self.credential_id = event.credential_id

    @applies(RoleAssigned)
    def _role_assigned(self, event: RoleAssigned) -> None:
        self.roles.append(event.role)

    @applies(RoleUnassigned)
    def _role_unassigned(self, event: RoleUnassigned) -> None:
        self.roles.remove(event.role)

    @applies(PermissionGranted)
    def _granted(self, event: PermissionGranted) -> None:
        self.permissions.append(event.permission)

    @applies(PermissionRevoked)
    def _revoked(self, event: PermissionRevoked) -> None:
        self.permissions.remove(event.permission)

    @applies(UserTokensRevoked)
    def _tokens_revoked(self, event: UserTokensRevoked) -> None:
        self.generation = event.generation

    @applies(UserDisabled)
    def _disabled(self, event: UserDisabled) -> None:
        self.disabled = True

    @applies(UserEnabled)
    def _enabled(self, event: UserEnabled) -> None:
        self.disabled = False


class Role(Aggregate):
    """Keyed by the role's name."""

    description: str = ""
    permissions: list[str] = Field(default_factory=list)

    @applies(RoleCreated)
    def _created(self, event: RoleCreated) -> None:
        self.description = event.role_description
        self.permissions = list(event.role_permissions)


class Session(Aggregate):
    """One sign-in: a family of refresh tokens, each replacing the one before."""

    user_id: str = ""
    credential_id: str = ""
    token_hash: str = ""
    used_hashes: list[str] = Field(default_factory=list)  # presenting one again is theft
    expires_at: int = 0
    refreshed_at: int = 0  # when the last token was replaced
    revoked: bool = False

    @applies(SessionStarted)
    def _started(self, event: SessionStarted) -> None:
        self.user_id, self.credential_id = event.user_id, event.credential_id
        self.token_hash, self.expires_at = event.token_hash, event.expires_at

    @applies(SessionRefreshed)
    def _refreshed(self, event: SessionRefreshed) -> None:
        self.used_hashes.append(self.token_hash)
        self.token_hash, self.refreshed_at = event.token_hash, event.refreshed_at

    @applies(SessionRevoked)
    def _revoked(self, event: SessionRevoked) -> None:
        self.revoked = True

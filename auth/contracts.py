"""The auth service's public contracts: its commands and queries, and what they answer."""

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from auth.password_policy import MIN_LENGTH, not_common
from pipelines import Command, Model, Query, Sensitive
from pipelines.contracts import PERMISSION_PATTERN

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    ),
]
NewPassword = Annotated[
    str, Sensitive, Field(min_length=MIN_LENGTH, max_length=256), AfterValidator(not_common)
]
# Sign-in accepts any password a user may once have chosen; the length cap bounds hashing work.
GivenPassword = Annotated[str, Sensitive, Field(min_length=1, max_length=256)]
RefreshTokenText = Annotated[str, Sensitive, Field(min_length=1, max_length=512)]
Permission = Annotated[str, StringConstraints(pattern=PERMISSION_PATTERN.pattern)]
RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
UserId = Annotated[str, Field(min_length=1, max_length=128)]
# On the wire `permissions`; in Python another name, as a contract's `permissions` and
# `description` class attributes say what it requires and what it does.
Permissions = Annotated[list[Permission], Field(max_length=200, alias="permissions")]
Page = Annotated[int, Field(ge=1)]
PageSize = Annotated[int, Field(ge=1, le=100)]


class CreateUser(Command, permissions=["auth:create-user"]):
    """Create a user who signs in with an email and a password."""

    email: Email
    password: NewPassword
    name: Annotated[str, Field(min_length=1, max_length=200)]
    roles: Annotated[list[RoleName], Field(max_length=50)] = []
    granted_permissions: Permissions = []


class CreateUserResult(Model):
    user_id: str
    email: str


class Authenticate(Command, limit_per_address=True):
    """Sign in with an email and a password: an access token and a refresh token."""

    email: Email
    password: GivenPassword


class RefreshToken(Command):
    """Trade a refresh token for new tokens; the old one stops working."""

    refresh_token: RefreshTokenText


class TokenUser(Model):
    id: str
    email: str
    permissions: list[str]


class AuthTokens(Model):
    access_token: Annotated[str, Sensitive]
    refresh_token: Annotated[str, Sensitive]
    expires_in: int  # seconds the access token is valid
    user: TokenUser


class RevokeToken(Command):
    """End the session of a refresh token (sign out)."""

    refresh_token: RefreshTokenText


class RevokeTokenResult(Model):
    revoked: bool  # False: the token was unknown or its session had already ended


class ChangePassword(Command):
    """Change the caller's own password; sessions signed in with the old one end."""

    current_password: GivenPassword
    new_password: NewPassword


class ChangePasswordResult(Model):
    user_id: str


class DisableUser(Command, permissions=["auth:manage-users"]):
    """Stop a user signing in, and end their sessions and access tokens at once."""

    user_id: UserId


class EnableUser(Command, permissions=["auth:manage-users"]):
    """Let a disabled user sign in again (the sessions disabling ended stay ended)."""

    user_id: UserId


class UserStatus(Model):
    user_id: str
    disabled: bool


class CreateRole(Command, permissions=["auth:manage-roles"]):
    """Define a role: a named set of permissions."""

    name: RoleName
    role_permissions: Permissions
    role_description: Annotated[str, Field(max_length=500, alias="description")] = ""


class RoleView(Model):
    name: str
    description: str
    permissions: list[str]


class AssignRole(Command, permissions=["auth:manage-users"]):
    """Give a user a role (no change if they have it)."""

    user_id: UserId
    role: RoleName


class UnassignRole(Command, permissions=["auth:manage-users"]):
    """Take a role from a user (no change if they do not have it)."""

    user_id: UserId
    role: RoleName


class GrantPermission(Command, permissions=["auth:manage-users"]):
    """Give a user a permission directly, beside those of their roles."""

    user_id: UserId
    permission: Permission


class RevokePermission(Command, permissions=["auth:manage-users"]):
    """Take a directly granted permission from a user."""

    user_id: UserId
    permission: Permission


class UserAccess(Model):
    user_id: str
    roles: list[str]
    permissions: list[str]  # granted directly


class GetUser(Query, permissions=["auth:view-users"]):
    """One user as the auth_users read model shows it."""

    user_id: UserId


class UserView(Model):
    id: str
    email: str
    name: str
    roles: list[str]
    permissions: list[str]  # granted directly
    created_at: str


class ListUsers(Query, permissions=["auth:view-users"]):
    """Users in the order they were created, optionally the one with an email."""

    email: Email | None = None
    page: Page = 1
    page_size: PageSize = 20


class UserPage(Model):
    items: list[UserView]
    page: int
    page_size: int
    total: int


class GetUserPermissions(Query, permissions=["auth:view-users"]):
    """A user's effective permissions: their roles' permissions and their direct ones."""

    user_id: UserId


class UserPermissions(Model):
    user_id: str
    roles: list[str]
    permissions: list[str]


class ListRoles(Query, permissions=["auth:view-roles"]):
    """Roles by name."""

    page: Page = 1
    page_size: PageSize = 50


class RolePage(Model):
    items: list[RoleView]
    page: int
    page_size: int
    total: int

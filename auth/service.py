"""The auth service: which handler answers each contract, with which rules and read model."""

from pathlib import Path

from auth import queries, revocations, roles, service_tokens, sessions, users
from auth.bootstrap import create_admin_on_start
from auth.contracts import (
    AssignRole,
    Authenticate,
    AuthTokens,
    ChangePassword,
    ChangePasswordResult,
    CreateRole,
    CreateUser,
    CreateUserResult,
    DisableUser,
    EnableUser,
    GetUser,
    GetUserPermissions,
    GrantPermission,
    ListRoles,
    ListUsers,
    RefreshToken,
    RevokePermission,
    RevokeToken,
    RevokeTokenResult,
    RolePage,
    RoleView,
    UnassignRole,
    UserAccess,
    UserPage,
    UserPermissions,
    UserStatus,
    UserView,
)
from auth.events import EVENTS, SessionRevoked, UserTokensRevoked
from auth.http import jwks
from auth.readmodels import roles_view, users_view
from pipelines import Service
from pipelines.querycache import Cached
from pipelines.service_identity import ActForUser, IssueServiceToken, ServiceToken

service = Service(
    "auth",
    version="1.0.0",
    description="Users, roles, permissions and tokens",
    http_port=3001,
    migrations=Path(__file__).parent / "migrations",
)
service.projection(users_view)
service.projection(roles_view)
service.publishes(*EVENTS)
service.background(create_admin_on_start)
service.http.add_api_route("/.well-known/jwks.json", jwks, methods=["GET"])

service.command(CreateUser, policies=[users.grants_need_manage_users], result=CreateUserResult)(
    users.create_user
)
service.command(ChangePassword, result=ChangePasswordResult)(users.change_password)
service.command(DisableUser, result=UserStatus)(users.disable_user)
service.command(EnableUser, result=UserStatus)(users.enable_user)
service.command(Authenticate, result=AuthTokens)(sessions.authenticate)
service.command(RefreshToken, result=AuthTokens)(sessions.refresh_token)
service.command(RevokeToken, result=RevokeTokenResult)(sessions.revoke_token)
service.command(IssueServiceToken, result=ServiceToken)(service_tokens.issue_service_token)
service.command(ActForUser, result=ServiceToken)(service_tokens.act_for_user)

service.command(CreateRole, result=RoleView)(roles.create_role)
service.command(AssignRole, result=UserAccess)(roles.assign_role)
service.command(UnassignRole, result=UserAccess)(roles.unassign_role)
service.command(GrantPermission, result=UserAccess)(roles.grant_permission)
service.command(RevokePermission, result=UserAccess)(roles.revoke_permission)

# Every revocation is kept in Redis for the gateway (`auth.revocations`).
service.on(SessionRevoked, subscriber="auth-revocations")(revocations.remember)
service.on(UserTokensRevoked, subscriber="auth-revocations")(revocations.remember)

service.query(GetUser, result=UserView, reads=users_view, cache=Cached(ttl=60))(queries.get_user)
service.query(ListUsers, result=UserPage, reads=users_view, cache=Cached(ttl=60))(
    queries.list_users
)
# Not cached: the answer also depends on the roles read model.
service.query(GetUserPermissions, result=UserPermissions, reads=users_view)(
    queries.get_user_permissions
)
service.query(ListRoles, result=RolePage, reads=roles_view, cache=Cached(ttl=60))(
    queries.list_roles
)

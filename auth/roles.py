"""Roles, and what each user is granted: roles and direct permissions.

Granting what a user already has (or revoking what they lack) changes nothing and succeeds.
Taking a role or a permission away revokes the user's access tokens: the next request needs
a token issued after the change (a refresh gets one).
"""

from auth.contracts import (
    AssignRole,
    CreateRole,
    GrantPermission,
    RevokePermission,
    RoleView,
    UnassignRole,
    UserAccess,
)
from auth.domain import Role, User
from auth.events import (
    PermissionGranted,
    PermissionRevoked,
    RoleAssigned,
    RoleCreated,
    RoleUnassigned,
)
from auth.revocations import revoke_tokens
from pipelines import Conflict, Context, NotFound


async def create_role(command: CreateRole, ctx: Context) -> RoleView:
    role = await ctx.load(Role, command.name)
    if role.exists:
        raise Conflict(f"role {command.name} already exists")
    role.record(
        RoleCreated(
            role=command.name,
            role_description=command.role_description,
            role_permissions=sorted(set(command.role_permissions)),
        )
    )
    return RoleView(name=role.id, description=role.description, permissions=role.permissions)


async def assign_role(command: AssignRole, ctx: Context) -> UserAccess:
    user = await existing_user(ctx, command.user_id)
    if not (await ctx.load(Role, command.role)).exists:
        raise NotFound(f"role {command.role} does not exist")
    if command.role not in user.roles:
        user.record(RoleAssigned(user_id=user.id, role=command.role))
    return access_of(user)


async def unassign_role(command: UnassignRole, ctx: Context) -> UserAccess:
    user = await existing_user(ctx, command.user_id)
    if command.role in user.roles:
        user.record(RoleUnassigned(user_id=user.id, role=command.role))
        revoke_tokens(ctx, user, "access-reduced")
    return access_of(user)


async def grant_permission(command: GrantPermission, ctx: Context) -> UserAccess:
    user = await existing_user(ctx, command.user_id)
    if command.permission not in user.permissions:
        user.record(PermissionGranted(user_id=user.id, permission=command.permission))
    return access_of(user)


async def revoke_permission(command: RevokePermission, ctx: Context) -> UserAccess:
    user = await existing_user(ctx, command.user_id)
    if command.permission in user.permissions:
        user.record(PermissionRevoked(user_id=user.id, permission=command.permission))
        revoke_tokens(ctx, user, "access-reduced")
    return access_of(user)


async def existing_user(ctx: Context, user_id: str) -> User:
    user = await ctx.load(User, user_id)
    if not user.exists:
        raise NotFound(f"user {user_id} does not exist")
    return user


def access_of(user: User) -> UserAccess:
    return UserAccess(
        user_id=user.id, roles=sorted(user.roles), permissions=sorted(user.permissions)
    )

"""Creating users, changing passwords, disabling and enabling users."""

import uuid

from auth.contracts import (
    ChangePassword,
    ChangePasswordResult,
    CreateUser,
    CreateUserResult,
    DisableUser,
    EnableUser,
    UserStatus,
)
from auth.domain import EmailClaim, Role, User
from auth.errors import InvalidCredentials, SignInRequired
from auth.events import EmailClaimed, PasswordChanged, UserCreated, UserDisabled, UserEnabled
from auth.password_policy import check_not_email
from auth.passwords import load_hash, purge_old_credentials, store_credential, verify_password
from auth.resources import resources
from auth.revocations import revoke_tokens
from auth.roles import existing_user
from pipelines import Conflict, Context, ValidationError
from pipelines.errors import Unauthorized


def grants_need_manage_users(command: CreateUser, ctx: Context) -> bool:
    """Creating a user with roles or permissions grants them: that takes auth:manage-users."""
    if not command.roles and not command.granted_permissions:
        return True
    return ctx.caller is not None and ctx.caller.has("auth:manage-users")


async def create_user(command: CreateUser, ctx: Context) -> CreateUserResult:
    check_not_email(command.password, command.email)
    claim = await ctx.load(EmailClaim, command.email)
    if claim.exists:
        raise Conflict("a user with this email already exists")
    await require_roles(ctx, command.roles)
    user = ctx.create(User, str(uuid.uuid4()))
    credential_id = await store_credential(ctx.store.pool, user.id, command.password)
    claim.record(EmailClaimed(email=command.email, user_id=user.id))
    user.record(
        UserCreated(
            user_id=user.id,
            email=command.email,
            name=command.name,
            roles=sorted(set(command.roles)),
            granted_permissions=sorted(set(command.granted_permissions)),
            credential_id=credential_id,
        )
    )
    return CreateUserResult(user_id=user.id, email=user.email)


async def require_roles(ctx: Context, names: list[str]) -> None:
    missing = [name for name in names if not (await ctx.load(Role, name)).exists]
    if missing:
        raise ValidationError(
            "unknown roles", [{"field": "roles", "message": f"no role {name}"} for name in missing]
        )


async def change_password(command: ChangePassword, ctx: Context) -> ChangePasswordResult:
    if ctx.caller is None:
        raise SignInRequired("sign in to change your password")
    user = await ctx.load(User, ctx.caller.user_id)
    if not user.exists:
        raise Unauthorized("the signed-in user does not exist")
    throttle, address = resources().throttle, ctx.client_address
    await throttle.check(user.email, address)
    pool = ctx.store.pool
    current = await load_hash(pool, user.credential_id)
    if not await verify_password(current, command.current_password):
        await throttle.failed(user.email, address)
        raise InvalidCredentials("the current password is wrong")
    check_not_email(command.new_password, user.email)
    previous = user.credential_id
    credential_id = await store_credential(pool, user.id, command.new_password)
    user.record(PasswordChanged(user_id=user.id, credential_id=credential_id))
    revoke_tokens(ctx, user, "password-changed")
    await purge_old_credentials(pool, user.id, keep=[previous, credential_id])
    return ChangePasswordResult(user_id=user.id)


async def disable_user(command: DisableUser, ctx: Context) -> UserStatus:
    if ctx.caller is not None and ctx.caller.user_id == command.user_id:
        raise ValidationError(
            "you cannot disable yourself", [{"field": "userId", "message": "the caller"}]
        )
    user = await existing_user(ctx, command.user_id)
    if not user.disabled:
        user.record(UserDisabled(user_id=user.id))
        revoke_tokens(ctx, user, "user-disabled")
    return UserStatus(user_id=user.id, disabled=True)


async def enable_user(command: EnableUser, ctx: Context) -> UserStatus:
    user = await existing_user(ctx, command.user_id)
    if user.disabled:
        user.record(UserEnabled(user_id=user.id))
    return UserStatus(user_id=user.id, disabled=False)

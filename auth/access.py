"""Effective permissions: a user's roles' permissions together with their direct ones."""

from collections.abc import Iterable

from auth.domain import Role, User
from pipelines import Caller, Context


def union(direct: Iterable[str], role_permissions: Iterable[Iterable[str]]) -> list[str]:
    return sorted(set(direct).union(*role_permissions))


async def effective_permissions(ctx: Context, user: User) -> list[str]:
    """From the aggregates themselves: what a token issued now must carry."""
    roles = [await ctx.load(Role, name) for name in user.roles]
    return union(user.permissions, (role.permissions for role in roles if role.exists))


async def caller_now(ctx: Context, user: User) -> Caller:
    """The user as a token issued now names them (their generation included: a token of an
    earlier generation is revoked)."""
    permissions = frozenset(await effective_permissions(ctx, user))
    roles = tuple(sorted(user.roles))
    return Caller(user.id, user.email, user.name, permissions, roles, generation=user.generation)

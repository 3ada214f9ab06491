"""The auth queries, answered from the auth_users and auth_roles read models."""

from auth.access import union
from auth.contracts import (
    GetUser,
    GetUserPermissions,
    ListRoles,
    ListUsers,
    RolePage,
    RoleView,
    UserPage,
    UserPermissions,
    UserView,
)
from auth.readmodels import roles_view, users_view
from pipelines import Context, NotFound


async def get_user(query: GetUser, ctx: Context) -> UserView:
    return await _user(ctx, query.user_id)


async def list_users(query: ListUsers, ctx: Context) -> UserPage:
    docs, total = await users_view.documents(ctx).find(
        {"email": query.email},
        order_by="createdAt",
        offset=(query.page - 1) * query.page_size,
        limit=query.page_size,
    )
    return UserPage(
        items=[UserView.model_validate(d) for d in docs],
        page=query.page,
        page_size=query.page_size,
        total=total,
    )


async def get_user_permissions(query: GetUserPermissions, ctx: Context) -> UserPermissions:
    user = await _user(ctx, query.user_id)
    roles = roles_view.documents(ctx)
    role_docs = [await roles.get(name) for name in user.roles]
    return UserPermissions(
        user_id=user.id,
        roles=user.roles,
        permissions=union(user.permissions, (doc["permissions"] for doc in role_docs if doc)),
    )


async def list_roles(query: ListRoles, ctx: Context) -> RolePage:
    docs, total = await roles_view.documents(ctx).find(
        offset=(query.page - 1) * query.page_size, limit=query.page_size
    )
    return RolePage(
        items=[RoleView.model_validate(d) for d in docs],
        page=query.page,
        page_size=query.page_size,
        total=total,
    )


async def _user(ctx: Context, user_id: str) -> UserView:
    doc = await users_view.documents(ctx).get(user_id)
    if doc is None:
        raise NotFound(f"user {user_id} does not exist")
    return UserView.model_validate(doc)

"""The read models the auth queries answer from: one document per user, one per role."""

from auth.events import (
    PermissionGranted,
    PermissionRevoked,
    RoleAssigned,
    RoleCreated,
    RoleUnassigned,
    UserCreated,
)
from pipelines.eventstore import RecordedEvent
from projections import Documents, Projection

users_view = Projection("auth_users", indexes={"email": "email", "created": "createdAt"})
roles_view = Projection("auth_roles")


@users_view.on(UserCreated)
async def user_created(event: UserCreated, docs: Documents, meta: RecordedEvent) -> None:
    docs.put(
        event.user_id,
        {
            "id": event.user_id,
            "email": event.email,
            "name": event.name,
            "roles": event.roles,
            "permissions": event.granted_permissions,
            "createdAt": meta.occurred_at.isoformat(),
        },
    )


async def _set_member(docs: Documents, user_id: str, field: str, value: str, member: bool) -> None:
    doc = await docs.get(user_id)
    if doc is not None:
        values = (set(doc[field]) | {value}) if member else (set(doc[field]) - {value})
        docs.patch(user_id, {field: sorted(values)})


@users_view.on(RoleAssigned)
async def role_assigned(event: RoleAssigned, docs: Documents, meta: RecordedEvent) -> None:
    await _set_member(docs, event.user_id, "roles", event.role, member=True)


@users_view.on(RoleUnassigned)
async def role_unassigned(event: RoleUnassigned, docs: Documents, meta: RecordedEvent) -> None:
    await _set_member(docs, event.user_id, "roles", event.role, member=False)


@users_view.on(PermissionGranted)
async def granted(event: PermissionGranted, docs: Documents, meta: RecordedEvent) -> None:
    await _set_member(docs, event.user_id, "permissions", event.permission, member=True)


@users_view.on(PermissionRevoked)
async def revoked(event: PermissionRevoked, docs: Documents, meta: RecordedEvent) -> None:
    await _set_member(docs, event.user_id, "permissions", event.permission, member=False)


@roles_view.on(RoleCreated)
async def role_created(event: RoleCreated, docs: Documents, meta: RecordedEvent) -> None:
    docs.put(
        event.role,
        {
            "name": event.role,
            "description": event.role_description,
            "permissions": event.role_permissions,
        },
    )

"""The first administrator, from ADMIN_EMAIL / ADMIN_PASSWORD, made when the service starts.

It goes through the service's own commands, so it is recorded like any other user and is
idempotent the same way: what exists already answers CONFLICT and is left as it is.
"""

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError as InvalidInput

from auth.contracts import CreateRole, CreateUser
from pipelines import Caller, Command, Conflict
from pipelines.errors import Timeout
from pipelines.instance import ServiceInstance

if TYPE_CHECKING:
    from pipelines import Service

log = logging.getLogger("banyan.auth.bootstrap")

ADMIN_ROLE = "admin"
# Auth imports no other service, so the orders example's permissions are named here
# (orders:admin is checked only inside the orders service; no contract would reveal it).
ORDERS_PERMISSIONS = ("orders:place", "orders:cancel", "orders:read", "orders:admin")
PLATFORM_PERMISSIONS = ("discovery:read",)  # the registry's HTTP API
SEND_ATTEMPTS = 5


def admin_permissions(service: "Service") -> list[str]:
    """Every permission the auth contracts users call require, every orders permission, and
    reading discovery's registry (not what only services are given, like acting for users)."""
    own = {
        p
        for handler in service.requests.values()
        if not handler.contract.__internal__
        for p in handler.contract.__permissions__
    }
    return sorted(own.union(ORDERS_PERMISSIONS, PLATFORM_PERMISSIONS))


async def bootstrap_admin(instance: ServiceInstance) -> bool:
    """Create the administrator and the admin role unless they exist; True if it did."""
    settings = instance.settings
    if not settings.admin_email or settings.admin_password is None:
        return False
    permissions = admin_permissions(instance.service)
    try:
        admin = CreateUser(
            email=settings.admin_email,
            password=settings.admin_password.get_secret_value(),
            name="Administrator",
            roles=[ADMIN_ROLE],
        )
    except InvalidInput as exc:  # its message would quote the password
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)
        )
        log.error("ADMIN_EMAIL / ADMIN_PASSWORD rejected, no administrator created: %s", problems)
        return False
    caller = Caller("auth-bootstrap", name="auth bootstrap", permissions=frozenset(permissions))
    token = instance.runtime.tokens.issue(caller, ttl=120)
    role = CreateRole(
        name=ADMIN_ROLE, role_permissions=permissions, role_description="The administrators"
    )
    await _send(instance, role, token)
    created = await _send(instance, admin, token)
    log.info(
        "administrator %s %s", settings.admin_email, "created" if created else "already exists"
    )
    return created


async def create_admin_on_start(instance: ServiceInstance) -> None:
    try:
        await bootstrap_admin(instance)
    except Exception:
        log.exception("could not create the first administrator")


async def _send(instance: ServiceInstance, command: Command, token: str) -> bool:
    """Send a command to this service; False if it answered that the thing exists."""
    assert instance.runtime.rpc is not None
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            reply = await instance.runtime.rpc.send(
                instance.service.name, command, token=token, timeout=10
            )
            reply.result()
            return True
        except Conflict:
            return False
        except Timeout:
            if attempt == SEND_ATTEMPTS:
                raise
    raise AssertionError("unreachable")

"""Whom a test message comes from: a user with permissions, an administrator, nobody, or a
user whose token has expired. The kit signs their token as the gateway's would be signed, and
the service verifies it: refusals (403, 401) come from the platform's own checks."""

from dataclasses import dataclass, replace

from pipelines.identity import Caller


@dataclass(frozen=True, slots=True)
class Acting:
    caller: Caller | None  # None: no token at all
    expired: bool = False
    every_permission: bool = False  # admin(): every permission the kit's contracts require


def user(user_id: str = "user-1", *permissions: str) -> Acting:
    """A signed-in user holding exactly `permissions`."""
    return Acting(Caller(user_id, f"{user_id}@example.com", user_id, frozenset(permissions)))


def admin(user_id: str = "admin") -> Acting:
    """A caller holding every permission the kit's services name: those their contracts
    require, and their events' `admin` permissions."""
    caller = Caller(user_id, f"{user_id}@example.com", user_id)
    return Acting(caller, every_permission=True)


anonymous = Acting(None)


def expired(acting: Acting) -> Acting:
    """The same caller, with a token that expired: refused with 401 TOKEN_EXPIRED."""
    return replace(acting, expired=True)

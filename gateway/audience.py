"""Who receives an event on the gateway's sockets: the audience its contract declares.

An event with no audience is delivered to nobody, and the platform's own services' events
never are, whatever they declare. A public event goes to anyone; any other to the holders of
its permissions, and, when it names an owner field, only those whose user id the field holds,
unless they hold the contract's admin permissions. The owner rule becomes an equality filter
of the subscription, so delivery costs one more dictionary lookup per event.
"""

from typing import Any

from gateway.errors import GatewayError
from pipelines.identity import Caller
from pipelines.registry import DISCOVERY, Audience, ContractInfo

PLATFORM_SERVICES = frozenset({"auth", DISCOVERY})


def refusal(caller: Caller | None, service: str, contract: ContractInfo) -> GatewayError | None:
    """Why `caller` may not receive `contract`'s events at all; None if they may."""
    name, audience = contract.message_type, contract.audience
    if audience is None or service in PLATFORM_SERVICES:
        return GatewayError(403, "INSUFFICIENT_PERMISSIONS", f"{name} is not delivered to clients")
    if audience.public:
        return None
    if caller is None:
        return GatewayError(401, "NO_AUTH_HEADER", f"{name} events need a bearer token")
    required = contract.required_permissions
    if caller.has_all(required):
        return None
    return GatewayError(
        403,
        "INSUFFICIENT_PERMISSIONS",
        f"{name} events require {', '.join(required)}",
        {"required": required, "missing": sorted(set(required) - caller.permissions)},
    )


def may_receive(caller: Caller | None, service: str, contract: ContractInfo) -> bool:
    return refusal(caller, service, contract) is None


def check(caller: Caller | None, service: str, contract: ContractInfo) -> None:
    error = refusal(caller, service, contract)
    if error is not None:
        raise error


def admit(
    caller: Caller | None, service: str, contract: ContractInfo, requested: dict[str, Any]
) -> dict[str, Any]:
    """The filters of a subscription `caller` may have: theirs, plus the owner rule's."""
    check(caller, service, contract)
    audience = contract.audience
    if audience is None or audience.owner is None or caller is None or _is_admin(caller, audience):
        return requested
    owner = audience.owner
    if requested.get(owner, caller.user_id) != caller.user_id:
        raise GatewayError(
            403,
            "INSUFFICIENT_PERMISSIONS",
            f"you receive only your own {contract.message_type} events",
            {"field": owner, "allowed": caller.user_id},
        )
    return {**requested, owner: caller.user_id}


def _is_admin(caller: Caller, audience: Audience) -> bool:
    return bool(audience.admin) and caller.has_all(audience.admin)

"""Who receives an event on the gateway's sockets: the audience its contract declares.

An event with no audience is delivered to nobody, and the platform's own services' events
never are, whatever they declare. A public event goes to anyone; any other to the holders of
its permissions, and, when it names an owner field, only those whose user id the field holds,
unless they hold the contract's admin permissions. The hub keeps the subscriptions under the
owner rule by the user they are for, so the rule costs one dictionary lookup per event.
"""

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from pipelines.identity import Caller
from pipelines.registry import DISCOVERY, Audience, ContractInfo

PLATFORM_SERVICES = frozenset({"auth", DISCOVERY})


@dataclass(frozen=True, slots=True)
class Admission:
    """What a subscription receives: events whose data matches `filters` and, under the owner
    rule, whose `owner` field holds `user_id`."""

    filters: dict[str, Any]  # the client's, less the owner field
    owner: str | None = None
    user_id: str | None = None

    def all_filters(self) -> dict[str, Any]:
        return {**self.filters, self.owner: self.user_id} if self.owner else self.filters


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
    if caller.has_all(required):  # the common answer, without building the details
        return None
    return GatewayError(
        403,
        "INSUFFICIENT_PERMISSIONS",
        f"{name} events require {', '.join(required)}",
        {"required": required, "missing": caller.missing(required)},
    )


def may_receive(caller: Caller | None, service: str, contract: ContractInfo) -> bool:
    return refusal(caller, service, contract) is None


def check(caller: Caller | None, service: str, contract: ContractInfo) -> None:
    error = refusal(caller, service, contract)
    if error is not None:
        raise error


def admit(
    caller: Caller | None, service: str, contract: ContractInfo, requested: dict[str, Any]
) -> Admission:
    """The events of `contract` a subscription of `caller` with filters `requested` receives."""
    check(caller, service, contract)
    audience = contract.audience
    if audience is None or audience.owner is None or caller is None or _is_admin(caller, audience):
        return Admission(requested)
    owner = audience.owner
    if requested.get(owner, caller.user_id) != caller.user_id:
        raise GatewayError(
            403,
            "INSUFFICIENT_PERMISSIONS",
            f"you receive only your own {contract.message_type} events",
            {"field": owner, "allowed": caller.user_id},
        )
    theirs = {name: value for name, value in requested.items() if name != owner}
    return Admission(theirs, owner, caller.user_id)


def _is_admin(caller: Caller, audience: Audience) -> bool:
    return bool(audience.admin) and caller.has_all(audience.admin)

"""What a service sends to others: the contracts it declares in `Service(calls=[...])`.

Its identity on the bus holds exactly the permissions those contracts require, and sending a
contract it did not declare is refused before anything leaves the process.
"""

from collections.abc import Iterable

from pipelines.contracts import Contract, InvalidContract, check_contract
from pipelines.errors import Forbidden


class UndeclaredCall(Forbidden):
    """A service sent a contract missing from its `calls=`: a bug to fix in its declaration."""


class Calls:
    def __init__(self, service: str, contracts: Iterable[type[Contract]]) -> None:
        self.service = service
        self.contracts = tuple(contracts)
        for contract in self.contracts:
            check_contract(contract)
            if contract.__kind__ == "event":
                raise InvalidContract(
                    f"{service}: calls= lists the commands and queries it sends, not the "
                    f"event {contract.__name__} (subscribe with @service.on)"
                )
        self.message_types = frozenset(c.message_type() for c in self.contracts)
        self.permissions = frozenset(p for c in self.contracts for p in c.__permissions__)

    def check(self, message: Contract) -> None:
        """Refuse to send `message` unless its contract is declared."""
        name = message.message_type()
        if name not in self.message_types:
            raise UndeclaredCall(
                f"{self.service} sends {name} without declaring it: add {name} to "
                f'Service("{self.service}", calls=[...])',
                {"undeclared": name, "calls": sorted(self.message_types)},
            )

"""Contracts: the typed commands, queries and events services exchange.

    class PlaceOrder(Command, permissions=["orders:place"], description="Place an order"):
        customer_id: str
        items: list[OrderLine]

Field names are snake_case in Python and camelCase on the wire and in JSON Schema.
Mark a field `Annotated[str, Sensitive]` to have its value redacted in logs.
"""

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

PERMISSION_PATTERN = re.compile(r"^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*$")
CONTRACT_NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9]*$")

Kind = Literal["command", "query", "event", "model"]


class Sensitive:
    """Marker for `Annotated[...]`: the field's value never appears in logs."""


class InvalidContract(TypeError):
    pass


class Model(BaseModel):
    """A value carried inside contracts: camelCase on the wire, strict about unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", serialize_by_alias=True
    )


class Contract(Model):
    kind: ClassVar[Kind] = "model"
    permissions: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    owner: ClassVar[str | None] = None
    internal: ClassVar[bool] = False  # platform plumbing: never exposed by the gateway
    rate_limit: ClassVar[int | None] = None  # requests per minute per caller at the gateway

    def __init_subclass__(
        cls,
        *,
        permissions: list[str] | tuple[str, ...] | None = None,
        description: str | None = None,
        service: str | None = None,
        internal: bool | None = None,
        rate_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if permissions is not None:
            bad = [p for p in permissions if not PERMISSION_PATTERN.match(p)]
            if bad:
                raise InvalidContract(
                    f"{cls.__name__}: invalid permission {bad[0]!r}; expected 'resource:action' "
                    f"matching {PERMISSION_PATTERN.pattern}"
                )
            cls.permissions = tuple(permissions)
        if description is not None:
            cls.description = description
        elif cls.__doc__ and cls.__doc__ is not Contract.__doc__:
            cls.description = cls.__doc__.strip()
        if service is not None:
            cls.owner = service
        if internal is not None:
            cls.internal = internal
        if rate_limit is not None:
            cls.rate_limit = rate_limit

    @classmethod
    def message_type(cls) -> str:
        return cls.__name__

    @classmethod
    def is_public(cls) -> bool:
        return not cls.permissions

    @classmethod
    def sensitive_fields(cls) -> set[str]:
        return {
            info.alias or name
            for name, info in cls.model_fields.items()
            if any(m is Sensitive or isinstance(m, Sensitive) for m in info.metadata)
        }

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class Command(Contract):
    kind: ClassVar[Kind] = "command"


class Query(Contract):
    kind: ClassVar[Kind] = "query"


class Event(Contract):
    kind: ClassVar[Kind] = "event"


def check_contract(cls: type[Contract]) -> None:
    """Fail at start-up, not at the first message, on a contract the platform cannot route."""
    if not (isinstance(cls, type) and issubclass(cls, Contract)) or cls.kind == "model":
        raise InvalidContract(f"{cls!r} is not a Command, Query or Event contract")
    if not CONTRACT_NAME_PATTERN.match(cls.__name__):
        raise InvalidContract(f"contract name {cls.__name__!r} must be PascalCase")

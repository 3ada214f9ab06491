"""Contracts: the typed commands, queries and events services exchange.

    class PlaceOrder(Command, permissions=["orders:place"], description="Place an order"):
        customer_id: str
        items: list[OrderLine]

Field names are snake_case in Python and camelCase on the wire and in JSON Schema.
Mark a field `Annotated[str, Sensitive]` to have its value redacted in logs.
"""

import re
from typing import Any, ClassVar, Literal, get_args

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

    @classmethod
    def sensitive_fields(cls) -> set[str]:
        """Wire names of the fields marked `Sensitive`, here and in nested models."""
        names: set[str] = set()
        for name, info in cls.model_fields.items():
            if any(m is Sensitive or isinstance(m, Sensitive) for m in info.metadata):
                names.add(info.alias or name)
            for nested in _models_in(info.annotation):
                names |= nested.sensitive_fields()
        return names


def _models_in(annotation: Any) -> list[type["Model"]]:
    """The Model classes an annotation mentions (`list[Line]`, `Line | None`, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, Model):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


class Contract(Model):
    # Dunder names, so that no field of a contract (say, `permissions`) can replace them.
    __kind__: ClassVar[Kind] = "model"
    __permissions__: ClassVar[tuple[str, ...]] = ()
    __description__: ClassVar[str] = ""
    __service__: ClassVar[str | None] = None  # events: the service that records them
    __internal__: ClassVar[bool] = False  # platform plumbing: never exposed by the gateway
    __rate_limit__: ClassVar[int | None] = None  # requests per minute per caller (gateway)
    # limited per client address whatever token is presented (sign-in: a token buys nothing)
    __limit_per_address__: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        permissions: list[str] | tuple[str, ...] | None = None,
        description: str | None = None,
        service: str | None = None,
        internal: bool | None = None,
        rate_limit: int | None = None,
        limit_per_address: bool | None = None,
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
            cls.__permissions__ = tuple(permissions)
        if description is not None:
            cls.__description__ = description
        elif cls.__doc__ and cls.__doc__ is not Contract.__doc__:
            cls.__description__ = cls.__doc__.strip()
        if service is not None:
            cls.__service__ = service
        if internal is not None:
            cls.__internal__ = internal
        if rate_limit is not None:
            cls.__rate_limit__ = rate_limit
        if limit_per_address is not None:
            cls.__limit_per_address__ = limit_per_address

    @classmethod
    def message_type(cls) -> str:
        return cls.__name__

    @classmethod
    def is_public(cls) -> bool:
        return not cls.__permissions__

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class Command(Contract):
    __kind__: ClassVar[Kind] = "command"


class Query(Contract):
    __kind__: ClassVar[Kind] = "query"


class Event(Contract):
    __kind__: ClassVar[Kind] = "event"


def check_contract(cls: type[Contract]) -> None:
    """Fail at start-up, not at the first message, on a contract the platform cannot route."""
    if not (isinstance(cls, type) and issubclass(cls, Contract)) or cls.__kind__ == "model":
        raise InvalidContract(f"{cls!r} is not a Command, Query or Event contract")
    if not CONTRACT_NAME_PATTERN.match(cls.__name__):
        raise InvalidContract(f"contract name {cls.__name__!r} must be PascalCase")

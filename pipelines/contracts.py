"""Contracts: the typed commands, queries and events services exchange.

    class PlaceOrder(Command, permissions=["orders:place"], description="Place an order"):
        customer_id: str
        items: list[OrderLine]

    class OrderPlaced(Event, service="orders", permissions=["orders:read"],
                      owner="customer_id", admin="orders:admin"):
        order_id: str
        customer_id: str

Field names are snake_case in Python and camelCase on the wire and in JSON Schema.
An event declares who may receive it on the gateway's sockets (its audience): `public=True`
(anyone, no token needed), or `permissions` (holders of them all), optionally narrowed by
`owner` (a text field that must equal the caller's user id) unless the caller holds `admin`.
An event that declares neither is not delivered to clients at all.
Mark a field `Annotated[str, Sensitive]` to have its value redacted in logs.

An event has a schema version (`version=2`, default 1), recorded with every event it writes;
`@upcaster(OrderPlaced, 1)` (pipelines.upcasting) turns older payloads into the current one.
"""

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

PERMISSION_PATTERN = re.compile(r"^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*$")
CONTRACT_NAME_PATTERN = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_SCHEMA_VERSION = 99_999  # of an event: `x-schema-version` carries at most five digits

Kind = Literal["command", "query", "event", "model"]


class Sensitive:
    """Marker for `Annotated[...]`: the field's value never appears in logs."""


class InvalidContract(TypeError):
    pass


class Model(BaseModel):
    """A value carried inside contracts: camelCase on the wire, a tolerant reader.

    Fields a class does not know are ignored when it reads (an event a newer version of its
    producer wrote, a command with an optional field the next version of the same major
    added), so two versions run side by side. Its JSON Schema still says
    `additionalProperties: false`: the gateway, which validates against the newest registered
    schema, refuses a field that no version has (a typo).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        serialize_by_alias=True,
        json_schema_extra={"additionalProperties": False},
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


def _permissions(cls: type, permissions: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [p for p in permissions if not PERMISSION_PATTERN.match(p)]
    if bad:
        raise InvalidContract(
            f"{cls.__name__}: invalid permission {bad[0]!r}; expected 'resource:action' "
            f"matching {PERMISSION_PATTERN.pattern}"
        )
    return tuple(permissions)


def _version(cls: type["Contract"], version: int) -> int:
    if cls.__kind__ != "event":
        raise InvalidContract(f"{cls.__name__}: only events have a schema version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidContract(f"{cls.__name__}: version must be a whole number from 1")
    if version > MAX_SCHEMA_VERSION:
        raise InvalidContract(f"{cls.__name__}: version must be at most {MAX_SCHEMA_VERSION}")
    return version


def _check_audience(cls: type["Contract"]) -> None:
    """An event's audience must say one thing: public, or permissions (+ owner, + admin)."""
    name, owner = cls.__name__, cls.__owner__
    if cls.__public__ and (cls.__permissions__ or owner):
        raise InvalidContract(f"{name}: a public event takes no permissions and no owner")
    if owner is not None:
        field = cls.model_fields.get(owner)
        if field is None:
            raise InvalidContract(f"{name}: owner {owner!r} is not a field of the event")
        if field.annotation is not str:
            raise InvalidContract(f"{name}: owner {owner!r} must be a text field (str)")
        if not cls.__permissions__:
            raise InvalidContract(f"{name}: owner narrows permissions; declare them")
    if cls.__admin__ and owner is None:
        raise InvalidContract(f"{name}: admin lifts the owner rule; declare an owner")


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
    # events only: who may receive them on the gateway's sockets (see the module's docstring)
    __public__: ClassVar[bool] = False
    __owner__: ClassVar[str | None] = None
    __admin__: ClassVar[tuple[str, ...]] = ()
    # events only: the schema version this class reads and writes (see pipelines.upcasting)
    __version__: ClassVar[int] = 1
    __upcasters__: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def __init_subclass__(
        cls,
        *,
        permissions: list[str] | tuple[str, ...] | None = None,
        description: str | None = None,
        service: str | None = None,
        internal: bool | None = None,
        rate_limit: int | None = None,
        limit_per_address: bool | None = None,
        public: bool | None = None,
        owner: str | None = None,
        admin: str | list[str] | tuple[str, ...] | None = None,
        version: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__upcasters__ = {}  # each class its own: an upcaster belongs to one class
        if permissions is not None:
            cls.__permissions__ = _permissions(cls, permissions)
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
        if (public, owner, admin) != (None, None, None) and cls.__kind__ != "event":
            raise InvalidContract(f"{cls.__name__}: public, owner and admin are for events")
        if public is not None:
            cls.__public__ = public
        if owner is not None:
            cls.__owner__ = owner
        if admin is not None:
            cls.__admin__ = _permissions(cls, [admin] if isinstance(admin, str) else admin)
        if version is not None:
            cls.__version__ = _version(cls, version)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__kind__ == "event":
            _check_audience(cls)

    @classmethod
    def message_type(cls) -> str:
        return cls.__name__

    @classmethod
    def is_public(cls) -> bool:
        """Commands and queries: anyone may call them (no permissions). Events: anyone may
        receive them (`public=True`); an event with no permissions is not public by default."""
        return cls.__public__ if cls.__kind__ == "event" else not cls.__permissions__

    @classmethod
    def owner_alias(cls) -> str | None:
        """The wire name of an event's owner field."""
        if cls.__owner__ is None:
            return None
        return cls.model_fields[cls.__owner__].alias or cls.__owner__

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

"""What a registration must satisfy before the registry looks at it: names, versions,
permissions and schemas. Every problem is reported at once, each with where it is."""

import re
from collections.abc import Iterator
from typing import Any

from discovery.schemas import schema_problems
from discovery.semver import parse
from pipelines.contracts import CONTRACT_NAME_PATTERN, MAX_SCHEMA_VERSION, PERMISSION_PATTERN
from pipelines.errors import ValidationError
from pipelines.registry import ContractInfo, RegisterService

SERVICE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")  # a routing-key segment
MAX_INSTANCE_ID = 200
MAX_CALLS = 500

Problem = dict[str, str]


def check_registration(message: RegisterService) -> None:
    """Raise a VALIDATION_ERROR listing every problem of `message`, if it has any."""
    problems = [*_service_problems(message), *_contracts_problems(message.contracts)]
    if not problems:
        return
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ValidationError(
        f"invalid registration of {message.service_name!r} {message.version!r}: "
        f"{problems[0]['message']}{more}",
        problems,
    )


def _problem(field: str, message: str) -> Problem:
    return {"field": field, "message": message}


def _service_problems(message: RegisterService) -> Iterator[Problem]:
    if not SERVICE_NAME_PATTERN.match(message.service_name):
        yield _problem(
            "serviceName",
            f"service name {message.service_name!r} must match {SERVICE_NAME_PATTERN.pattern}",
        )
    if parse(message.version) is None:
        yield _problem(
            "version", f"version {message.version!r} is not a semantic version (like 1.4.2)"
        )
    if not 0 < len(message.instance_id) <= MAX_INSTANCE_ID:
        yield _problem("instanceId", f"instance id must have 1 to {MAX_INSTANCE_ID} characters")
    if len(message.calls) > MAX_CALLS:
        yield _problem("calls", f"a service declares at most {MAX_CALLS} calls")
    for i, called in enumerate(message.calls):
        if not CONTRACT_NAME_PATTERN.match(called):
            yield _problem(f"calls[{i}]", f"{called!r} is not a contract name")


def _contracts_problems(contracts: list[ContractInfo]) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, contract in enumerate(contracts):
        where = f"contracts[{i}]"
        if contract.message_type in seen:
            yield _problem(
                f"{where}.messageType", f"{contract.message_type} is declared more than once"
            )
        seen.add(contract.message_type)
        yield from _contract_problems(contract, where)


def _contract_problems(contract: ContractInfo, where: str) -> Iterator[Problem]:
    name = contract.message_type
    if not CONTRACT_NAME_PATTERN.match(name):
        yield _problem(f"{where}.messageType", f"contract name {name!r} must be PascalCase")
    for j, permission in enumerate(contract.required_permissions):
        if not PERMISSION_PATTERN.match(permission):
            yield _problem(
                f"{where}.requiredPermissions[{j}]",
                f"{name}: invalid permission {permission!r}; expected 'resource:action' "
                f"matching {PERMISSION_PATTERN.pattern}",
            )
    yield from _access_problems(contract, where)
    yield from _version_problems(contract, where)
    yield from _schema_problems(name, contract.input_schema, f"{where}.inputSchema")
    if contract.input_schema.get("type") != "object":
        yield _problem(f"{where}.inputSchema.type", f"{name}: a message must be a JSON object")
    if contract.output_schema is not None:
        yield from _schema_problems(name, contract.output_schema, f"{where}.outputSchema")


def _access_problems(contract: ContractInfo, where: str) -> Iterator[Problem]:
    name, audience = contract.message_type, contract.audience
    if contract.kind != "event":
        if contract.is_public == bool(contract.required_permissions):
            yield _problem(
                f"{where}.isPublic",
                f"{name}: a contract is public exactly when it requires no permissions",
            )
        return
    if audience is None:  # not delivered to clients (so are events registered before audiences)
        return
    if audience.public and contract.required_permissions:
        yield _problem(f"{where}.audience", f"{name}: a public event takes no permissions")
    if not audience.public and not contract.required_permissions:
        yield _problem(f"{where}.audience", f"{name}: say who receives it: permissions or public")
    if audience.owner is not None and audience.owner not in contract.input_schema.get(
        "properties", {}
    ):
        yield _problem(
            f"{where}.audience.owner", f"{name}: owner {audience.owner!r} is not a field of it"
        )
    for j, permission in enumerate(audience.admin):
        if not PERMISSION_PATTERN.match(permission):
            yield _problem(
                f"{where}.audience.admin[{j}]", f"{name}: invalid permission {permission!r}"
            )


def _version_problems(contract: ContractInfo, where: str) -> Iterator[Problem]:
    """An event's schema version is 1 to MAX_SCHEMA_VERSION, and it upcasts from older versions
    only, each once; other contracts have no version but 1."""
    name, version, older = contract.message_type, contract.schema_version, contract.upcasts_from
    top = MAX_SCHEMA_VERSION if contract.kind == "event" else 1
    if not 1 <= version <= top:
        yield _problem(f"{where}.schemaVersion", f"{name}: schema version must be 1 to {top}")
    if any(not 1 <= v < version for v in older) or len(set(older)) != len(older):
        yield _problem(
            f"{where}.upcastsFrom", f"{name}: upcasts from distinct versions below {version} only"
        )


def _schema_problems(name: str, schema: Any, where: str) -> Iterator[Problem]:
    for field, message in schema_problems(schema, where):
        yield _problem(field, f"{name}: invalid schema at {field}: {message}")

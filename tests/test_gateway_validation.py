"""The gateway's schema check refuses what the service would refuse, and leaves the payload as
the client sent it: the service, not the gateway, fills its defaults. A query's fields are read
from its query string as Starlette reads them, typed by the schema."""

from typing import Any

import pytest
from starlette.datastructures import QueryParams

from gateway.errors import GatewayError
from gateway.requests import query_payload
from gateway.routes import Route
from gateway.validation import validate
from pipelines.registry import ContractInfo

SCHEMA = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "note": {"type": "string", "default": "none"},
    },
    "required": ["items"],
}
ROUTE = Route("orders", ContractInfo(message_type="Place", kind="command", input_schema=SCHEMA))


def test_a_valid_payload_is_left_as_it_came() -> None:
    payload = {"items": ["a"]}
    validate(ROUTE, payload)
    assert payload == {"items": ["a"]}


def test_an_invalid_payload_is_refused_naming_its_field() -> None:
    with pytest.raises(GatewayError) as refused:
        validate(ROUTE, {"items": []})
    assert refused.value.status == 400
    assert refused.value.details == [{"field": "items", "message": "must contain at least 1 items"}]


QUERY_SCHEMA = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "integer"}},
        "page": {"type": "integer"},
        "ratio": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "open": {"type": "boolean"},
    },
}
QUERY = Route("orders", ContractInfo(message_type="Find", kind="query", input_schema=QUERY_SCHEMA))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", {}),
        (b"page=2&page=3", {"page": 3}),
        (b"tags=1&tags=x&tags=3", {"tags": [1, "x", 3]}),
        (b"name=a+b%20c&empty=&bare", {"name": "a b c", "empty": "", "bare": ""}),
        (b"open=yes&page=two", {"open": True, "page": "two"}),
        (b"ratio=0.5&note=%C3%A9t%C3%A9", {"ratio": 0.5, "note": "\u00e9t\u00e9"}),
        ("note=\u00e9".encode("latin-1"), {"note": "\u00e9"}),
    ],
)
def test_a_query_string_is_read_as_starlette_reads_it(query: bytes, expected: Any) -> None:
    typed = query_payload(QUERY, query)
    assert typed == expected
    assert list(typed) == list(QueryParams(query))  # its fields in the same order


def test_a_nul_in_a_query_value_is_refused() -> None:
    with pytest.raises(GatewayError) as refused:
        query_payload(QUERY, b"page=1&note=a%00b")
    assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")

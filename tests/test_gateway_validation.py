"""The gateway's schema check refuses what the service would refuse, and leaves the payload as
the client sent it: the service, not the gateway, fills its defaults."""

import pytest

from gateway.errors import GatewayError
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

"""The gateway's OpenAPI document is one real tools accept, and its HTTP follows conventions."""

import asyncio
import importlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from examples.orders import service as orders_service  # the Service
from pipelines.settings import Settings
from tests.gateway_rig import running_gateway

HEADERS = ("Idempotency-Key", "X-Min-Position", "X-Correlation-ID", "X-Event-Position")


@pytest.fixture(scope="module")
async def http(settings: Settings, orders: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(settings, [orders_service]) as (_, client):
        yield client


async def spec_of(http: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await http.get("/openapi.json")).json()
    return document


async def test_the_document_is_valid_openapi(http: httpx.AsyncClient) -> None:
    validate(await spec_of(http))


async def test_every_reference_resolves(http: httpx.AsyncClient) -> None:
    document = await spec_of(http)
    text = str(document)
    assert "#/$defs/" not in text
    schemas = document["components"]["schemas"]
    assert "OrderLine" in schemas and "OrderSummary" in schemas


async def test_headers_and_errors_are_documented(http: httpx.AsyncClient) -> None:
    document = await spec_of(http)
    place = document["paths"]["/api/orders/place-order"]["post"]
    listed = document["paths"]["/api/orders/list-orders"]["get"]
    request_headers = {p["name"] for op in (place, listed) for p in op.get("parameters", [])}
    response_headers = set(place["responses"]["200"]["headers"])
    assert {"Idempotency-Key", "X-Correlation-ID"} <= request_headers
    assert "X-Min-Position" in {p["name"] for p in listed["parameters"]}
    assert {"X-Correlation-ID", "X-Event-Position"} <= response_headers
    for status in ("400", "401", "403", "429", "503", "504"):
        assert status in place["responses"], status
    assert "404" in document["paths"]["/api/orders/get-order"]["get"]["responses"]


async def test_the_version_changes_only_with_the_contracts(settings: Settings, orders: Any) -> None:
    versions = []
    for _ in range(2):
        async with running_gateway(settings, [orders_service]) as (_, client):
            versions.append((await spec_of(client))["info"]["version"])
    assert versions[0] == versions[1]


async def test_a_generated_client_calls_the_service(
    http: httpx.AsyncClient, token: Callable[..., str], tmp_path: Path
) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(await spec_of(http)))
    generator = Path(sys.executable).parent / "openapi-python-client"
    made = await asyncio.to_thread(
        subprocess.run,
        [str(generator), "generate", "--path", str(spec), "--output-path", str(tmp_path / "c")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    assert "warning" not in made.stdout.lower(), made.stdout
    sys.path.insert(0, str(tmp_path / "c"))
    try:
        await _call_through(importlib.import_module("banyan_api_gateway_client"), http, token)
    finally:
        sys.path.remove(str(tmp_path / "c"))


async def _call_through(package: Any, http: httpx.AsyncClient, token: Callable[..., str]) -> None:
    customer = f"gen-{uuid.uuid4().hex[:8]}"
    bearer = token(customer, "orders:place", "orders:read")
    client = package.AuthenticatedClient(base_url=str(http.base_url), token=bearer)
    models = importlib.import_module("banyan_api_gateway_client.models")
    place = importlib.import_module("banyan_api_gateway_client.api.orders.place_order")
    listing = importlib.import_module("banyan_api_gateway_client.api.orders.list_orders")
    line = models.OrderLine(sku="lime", quantity=2, unit_price="0.40")
    sent = await place.asyncio_detailed(client=client, body=models.PlaceOrder(items=[line]))
    placed = sent.parsed
    assert isinstance(placed, models.PlaceOrderResult), placed
    position = int(sent.headers["X-Event-Position"])  # read the write just made
    page = await listing.asyncio(client=client, x_min_position=position)
    assert isinstance(page, models.OrderPage), page
    assert [o.order_id for o in page.items] == [placed.order_id]


async def test_head_answers_like_get_without_a_body(http: httpx.AsyncClient) -> None:
    got = await http.get("/health")
    head = await http.head("/health")
    assert head.status_code == got.status_code == 200
    assert head.content == b""


async def test_405_says_which_methods_are_allowed(http: httpx.AsyncClient) -> None:
    refused = await http.delete("/api/orders/place-order")
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "POST"


async def test_large_answers_are_gzipped_for_clients_that_accept_it(
    http: httpx.AsyncClient,
) -> None:
    raw = await http.get("/openapi.json", headers={"Accept-Encoding": "identity"})
    zipped = await http.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert len(raw.content) > 1024 and "Content-Encoding" not in raw.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) < len(raw.content)
    assert zipped.content == raw.content  # httpx has decompressed it


async def test_404_carries_the_correlation_id(http: httpx.AsyncClient) -> None:
    missing = await http.get("/api/orders/no-such-thing", headers={"X-Correlation-ID": "c-404"})
    assert missing.status_code == 404
    assert missing.headers["X-Correlation-ID"] == "c-404"

"""`faststream docs gen module:app` describes the service: a valid AsyncAPI 3.0 document."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build" / "specs" / "3.0.0-without-$id.json"  # fetched by `make install`


async def generated(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "asyncapi.json"
    env = {**os.environ, "RABBITMQ_URL": "amqp://user:s3cret@broker.example:5673/prod"}
    command = [sys.executable, "-m", "faststream", "docs", "gen", "examples.orders:app"]
    made = await asyncio.to_thread(
        subprocess.run, [*command, "--out", str(out)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    return document


async def test_the_document_is_valid_asyncapi(tmp_path: Path) -> None:
    assert SPEC.exists(), f"{SPEC} is missing: `make install` fetches it"
    jsonschema.Draft7Validator(json.loads(SPEC.read_text())).validate(await generated(tmp_path))


async def test_it_names_the_service_and_carries_every_payload(tmp_path: Path) -> None:
    document = await generated(tmp_path)
    assert document["info"]["title"] == "orders" and document["info"]["version"] == "1.0.0"
    assert document["info"]["description"].startswith("Places, confirms")
    schemas = document["components"]["schemas"]
    assert "items" in schemas["PlaceOrder"]["properties"]
    assert schemas["OrderLine"]["required"] == ["sku", "quantity", "unitPrice"]
    assert "#/$defs/" not in json.dumps(document)
    place = document["operations"]["placeOrder"]
    assert place["action"] == "receive"
    assert place["reply"]["channel"] == {"$ref": "#/channels/PlaceOrderReply"}
    published = document["operations"]["publishOrderPlaced"]
    assert published["action"] == "send"
    assert document["channels"]["OrderPlaced"]["address"] == "orders.orderplaced"


async def test_the_broker_credentials_stay_out(tmp_path: Path) -> None:
    document = await generated(tmp_path)
    assert document["servers"]["rabbitmq"]["host"] == "broker.example:5673"
    assert "s3cret" not in json.dumps(document)

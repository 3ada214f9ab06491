"""`banyan contracts pull`: a consumer's classes of another service's contracts, written from
the registry's JSON Schemas, read and write what the producer's own classes do."""

import importlib.util
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import ValidationError

from examples.orders import contracts as real
from examples.orders.service import service as orders_service
from pipelines.contract_code import contracts_module

LINE = {"sku": "oat", "quantity": 2, "unitPrice": "1.25"}


def load(path: Path) -> ModuleType:
    name = f"pulled_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    contracts = [c for c in orders_service.registration("pull").contracts if not c.internal]
    path = tmp_path_factory.mktemp("pulled") / "orders_contracts.py"
    path.write_text(contracts_module("orders", orders_service.version, contracts))
    return load(path)


def test_a_pulled_command_writes_what_the_producer_reads(pulled: ModuleType) -> None:
    command = pulled.PlaceOrder(items=[pulled.OrderLine(sku="oat", quantity=2, unit_price="1.25")])
    assert real.PlaceOrder.model_validate_json(command.to_json()).items[0].unit_price == Decimal(
        "1.25"
    )
    assert pulled.PlaceOrder.__permissions__ == real.PlaceOrder.__permissions__
    assert pulled.PlaceOrder.__kind__ == "command"


def test_a_pulled_event_reads_what_the_producer_writes(pulled: ModuleType) -> None:
    event = real.OrderPlaced(
        order_id="o-1",
        customer_id="c-1",
        items=[real.OrderLine.model_validate(LINE)],
        total=Decimal("2.50"),
    )
    copy = pulled.OrderPlaced.model_validate_json(event.to_json())
    assert (copy.order_id, copy.customer_id, copy.total) == ("o-1", "c-1", Decimal("2.50"))
    assert copy.items[0].unit_price == Decimal("1.25")
    assert pulled.OrderPlaced.__service__ == "orders"
    cancelled = pulled.OrderCancelled.model_validate({"orderId": "o-1", "customerId": "c-1"})
    assert cancelled.items == [] and cancelled.reason is None  # defaults kept


def test_pulled_queries_and_results_keep_types_and_defaults(pulled: ModuleType) -> None:
    query = pulled.ListOrders()
    assert (query.page, query.page_size, query.status) == (1, 20, None)
    with pytest.raises(ValidationError):
        pulled.ListOrders(status="lost")  # the enumeration is kept
    page = {"items": [], "page": 1, "pageSize": 20, "total": 0}
    assert pulled.OrderPage.model_validate(page).page_size == 20

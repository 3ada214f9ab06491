"""A read model's `find` returns pages, never a whole table."""

import uuid

import asyncpg
import pytest

from examples.orders.contracts import PlaceOrder
from examples.orders.summary import order_summary
from projections import documents
from tests.conftest import eventually

ITEMS = [{"sku": "fig", "quantity": 1, "unitPrice": "1.00"}]


async def placed_orders(orders, rpc, token, count: int) -> str:
    customer = f"find-{uuid.uuid4().hex[:8]}"
    command = PlaceOrder.model_validate({"customerId": customer, "items": ITEMS})
    for _ in range(count):
        (await rpc.send("orders", command, token=token(customer, "orders:place"))).result()
    return customer


async def three_orders(orders, rpc, token) -> tuple[documents.DocumentReader, str]:
    customer = await placed_orders(orders, rpc, token, 3)
    view = documents.DocumentReader(orders.runtime.pool, order_summary.name)

    async def all_three() -> bool:
        try:
            return (await view.find({"customerId": customer}))[1] == 3
        except asyncpg.UndefinedTableError:  # the runner has not created its view yet
            return False

    await eventually(all_three, what="the three orders in order_summary")
    return view, customer


async def test_find_pages_by_limit_and_offset_and_counts_all(orders, rpc, token) -> None:
    view, customer = await three_orders(orders, rpc, token)
    page, total = await view.find({"customerId": customer}, limit=2)
    rest, _ = await view.find({"customerId": customer}, offset=2, limit=2)
    assert (len(page), total, len(rest)) == (2, 3, 1)


async def test_a_huge_limit_is_capped(orders, rpc, token, monkeypatch: pytest.MonkeyPatch) -> None:
    view, customer = await three_orders(orders, rpc, token)
    monkeypatch.setattr(documents, "MAX_PAGE", 2)
    page, total = await view.find({"customerId": customer}, limit=10**12)
    assert (len(page), total) == (2, 3)

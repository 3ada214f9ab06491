"""Queries read on the PostgreSQL primary versus on a streaming standby (`DATABASE_READ_URL`).

    make cluster
    set -a; . build/cluster/cluster.env; set +a
    export DATABASE_READ_URL=postgresql://postgres@127.0.0.1:5442/postgres
    .venv/bin/python -m bench.standby_reads
    make cluster-down

Places orders for one customer, waits until the standby has replayed them, then answers a
page of that customer's orders (uncached: every query reads the read model) through a
service, first reading the primary, then with `DATABASE_READ_URL` set, each against a
hand-written asyncpg loop running the same statement on the same server. Then measures how
long the standby's `order_summary` takes to reach a command's position (what decides whether
a read-your-writes query is answered there or by the primary).

Runs in a schema of its own (dropped at the end) on the cluster's default vhost.
"""

import asyncio
import os
import statistics
import uuid
from time import perf_counter
from typing import Any

os.environ.update({"LOG_LEVEL": "WARNING", "ANNOUNCE_ENABLED": "false"})
os.environ["DATABASE_SCHEMA"] = f"bench_standby_{uuid.uuid4().hex[:8]}"

from bench.common import compare, print_summary
from examples.orders import service as orders
from examples.orders.contracts import PlaceOrder
from examples.orders.summary import order_summary
from pipelines import Context, Query, Service
from pipelines.database import Pool, create_pool
from pipelines.identity import Caller, TokenCodec
from pipelines.instance import ServiceInstance
from pipelines.rpc import RpcClient
from pipelines.settings import Settings

ORDERS = 200
IN_FLIGHT = 16
COUNT = 3000
PAGE = (
    'SELECT doc, count(*) OVER () AS total FROM "order_summary" '
    "WHERE (doc->>'customerId') = $1 ORDER BY (doc->>'placedAt') DESC, id OFFSET 0 LIMIT 20"
)
POSITION = "SELECT position FROM projection_positions WHERE name = 'order_summary'"


class CustomerPage(Query):
    customer_id: str


reader = Service("standby-bench")


@reader.query(CustomerPage, reads=order_summary)
async def customer_page(query: CustomerPage, ctx: Context) -> int:
    docs, _total = await order_summary.documents(ctx).find(
        {"customerId": query.customer_id}, order_by="placedAt", descending=True
    )
    return len(docs)


async def place_orders(rpc: RpcClient, token: str, customer: str, count: int) -> list[int]:
    items = [{"sku": "plum", "quantity": 1, "unitPrice": "0.25"}]
    command = PlaceOrder.model_validate({"customerId": customer, "items": items})
    placed = [await rpc.send("orders", command, token=token) for _ in range(count)]
    return [reply.position or 0 for reply in placed]


async def reached(pool: Pool, position: int) -> None:
    while (await pool.fetchval(POSITION) or 0) < position:
        await asyncio.sleep(0.001)


async def measure(settings: Settings, rpc: RpcClient, pool: Pool, customer: str, where: str) -> Any:
    instance: ServiceInstance = reader.instance(settings)
    await instance.start()
    try:
        query = CustomerPage(customer_id=customer)

        async def through_banyan() -> None:
            assert (await rpc.send("standby-bench", query)).result() == 20

        async def by_hand() -> None:
            assert len(await pool.fetch(PAGE, customer)) == 20

        return await compare(
            f"a page of orders, read on the {where}", through_banyan, by_hand,
            count=COUNT, rounds=4, warmup=200, concurrency=IN_FLIGHT, scored=False,
        )  # fmt: skip
    finally:
        await instance.stop()


async def main() -> None:
    settings = Settings()
    standby_url = settings.database_read_url
    assert standby_url, "set DATABASE_READ_URL to the standby (see the docstring)"
    primary_only = settings.model_copy(update={"database_read_url": ""})
    caller = Caller(
        "bench", "bench@example.com", "bench", frozenset({"orders:place", "orders:admin"})
    )
    token = TokenCodec(settings).issue(caller)
    service = orders.instance(primary_only)
    await service.start()
    primary = await create_pool(primary_only)
    standby = await create_pool(primary_only, dsn=standby_url, min_size=0)
    try:
        async with RpcClient(settings.rabbitmq_url, service_name="bench") as rpc:
            customer = uuid.uuid4().hex
            positions = await place_orders(rpc, token, customer, ORDERS)
            await reached(standby, positions[-1])
            on_primary = await measure(primary_only, rpc, primary, customer, "primary")
            on_standby = await measure(settings, rpc, standby, customer, "standby")
            lags = []
            for position in await place_orders(rpc, token, uuid.uuid4().hex, 50):
                started = perf_counter()
                await reached(standby, position)
                lags.append((perf_counter() - started) * 1000)
        print_summary([on_primary, on_standby])
        ratio = on_standby.sdk.throughput / on_primary.sdk.throughput
        print(f"standby / primary, queries per second through Banyan: {ratio:.2f}")
        median, p90 = statistics.median(lags), statistics.quantiles(lags, n=10)[-1]
        print(
            f"the standby's order_summary reaches a command's position {median:.1f} ms "
            f"(median; p90 {p90:.1f} ms) after its reply"
        )
    finally:
        await service.stop()
        await primary.execute(f'DROP SCHEMA "{settings.database_schema}" CASCADE')
        await primary.close()
        await standby.close()


if __name__ == "__main__":
    asyncio.run(main())

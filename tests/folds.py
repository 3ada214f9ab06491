"""The order_summary read model as a plain fold of the whole log, to compare against."""

from typing import Any

import asyncpg

FINAL = {"OrderCancelled": "cancelled", "OrderConfirmed": "confirmed", "OrderRejected": "rejected"}


async def folded_orders(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    orders: dict[str, dict[str, Any]] = {}
    rows = await pool.fetch(
        "SELECT event_type, data FROM events WHERE event_type IN "
        "('OrderPlaced', 'OrderCancelled', 'OrderConfirmed', 'OrderRejected') ORDER BY position"
    )
    for row in rows:
        data = row["data"]
        if row["event_type"] == "OrderPlaced":
            orders[data["orderId"]] = {
                "customerId": data["customerId"], "total": data["total"], "status": "placed",
            }  # fmt: skip
        elif data["orderId"] in orders:
            orders[data["orderId"]]["status"] = FINAL[row["event_type"]]
    return orders


async def caught_up(pool: asyncpg.Pool | asyncpg.Connection) -> bool:
    """order_summary's checkpoint is at the end of the log."""
    position = await pool.fetchval(
        "SELECT position FROM projection_positions WHERE name = 'order_summary'"
    )
    return bool(position == await pool.fetchval("SELECT max(position) FROM events"))


async def projected_orders(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT id, doc FROM order_summary")
    return {r["id"]: {k: r["doc"][k] for k in ("customerId", "total", "status")} for r in rows}

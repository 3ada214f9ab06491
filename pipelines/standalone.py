"""Running the event relay as its own process (`banyan relay`)."""

import asyncio

import aio_pika

from pipelines import telemetry
from pipelines.database import migrate
from pipelines.production import refuse_private_key
from pipelines.rabbitnodes import connect_rabbitmq
from pipelines.relay import EventRelay
from pipelines.settings import Settings
from pipelines.topology import EVENTS_EXCHANGE


async def run_relay(settings: Settings) -> None:
    refuse_private_key(settings, "relay")
    telemetry.start("relay", settings)  # its publish spans link back to each event's trace
    await migrate(settings)
    connection = await connect_rabbitmq(settings.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await EventRelay(settings, channel).run()
    except asyncio.CancelledError:
        pass
    finally:
        await connection.close()
        telemetry.shutdown()

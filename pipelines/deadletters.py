"""Dead-letter queues: list them with their sizes, and re-drive their messages."""

import base64
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass

import aio_pika
from yarl import URL

from pipelines import headers as h
from pipelines.event_signing import ForgedEvent
from pipelines.from_log import LogCopies, log_copies
from pipelines.messages import resent
from pipelines.rabbitnodes import connect_rabbitmq, rabbitmq_nodes
from pipelines.settings import Settings

DLQ_PREFIX = "dlq."
ERROR_HEADERS = (
    h.ERROR_TYPE, h.ERROR_MESSAGE, h.ORIGINAL_QUEUE, h.FAILED_AT, h.REDELIVERY_COUNT, "x-death",
)  # fmt: skip


@dataclass(frozen=True)
class QueueDepth:
    name: str
    messages: int


def list_queues(settings: Settings) -> list[QueueDepth]:
    """Every queue of the virtual host with its depth (management API, else rabbitmqctl)."""
    url = rabbitmq_nodes(settings.rabbitmq_url)[0]
    vhost = url.path.lstrip("/") or "/"
    try:
        return _list_over_http(settings, url, vhost)
    except OSError:
        if shutil.which("rabbitmqctl") is None:
            raise
        return _list_with_rabbitmqctl(vhost)


def _list_over_http(settings: Settings, url: URL, vhost: str) -> list[QueueDepth]:
    api = settings.rabbitmq_management_url or f"http://{url.host}:15672"
    request = urllib.request.Request(f"{api}/api/queues/{urllib.parse.quote(vhost, safe='')}")
    credentials = f"{url.user or 'guest'}:{url.password or 'guest'}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return [QueueDepth(q["name"], int(q.get("messages", 0))) for q in json.load(response)]


def _list_with_rabbitmqctl(vhost: str) -> list[QueueDepth]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = (line.split("\t") for line in out.splitlines() if "\t" in line)
    return [QueueDepth(name, int(count)) for name, count in rows]


def dead_letter_queues(settings: Settings) -> list[QueueDepth]:
    return sorted(
        (q for q in list_queues(settings) if q.name.startswith(DLQ_PREFIX)), key=lambda q: q.name
    )


def original_queue(dlq: str) -> str:
    return dlq.removeprefix(DLQ_PREFIX)


async def replay(settings: Settings, queue: str) -> int:
    """Move every message now in `dlq.{queue}` back to `queue`, its retry count reset; how many
    moved. An event refused as forged goes back as the log holds it, signed again
    (`pipelines.from_log`); one the log does not hold for `queue` stays in the dead-letter queue."""
    dlq_name = queue if queue.startswith(DLQ_PREFIX) else DLQ_PREFIX + queue
    target = original_queue(dlq_name)
    connection = await connect_rabbitmq(settings.rabbitmq_url)
    async with connection, log_copies(settings) as log:
        channel = await connection.channel(publisher_confirms=True)
        dlq = await channel.declare_queue(dlq_name, passive=True)
        pending = dlq.declaration_result.message_count or 0
        moved = 0
        for _ in range(pending):
            if (message := await dlq.get(fail=False)) is None:
                break
            again = await _redrive(message, target, log)
            if again is None:  # kept, at the end of the dead-letter queue
                await channel.default_exchange.publish(resent(message, message.headers), dlq_name)
            else:
                await channel.default_exchange.publish(again, target)
                moved += 1
            await message.ack()
        return moved


async def _redrive(
    message: aio_pika.abc.AbstractIncomingMessage, queue: str, log: LogCopies
) -> aio_pika.Message | None:
    headers = message.headers or {}
    if headers.get(h.ERROR_TYPE) == ForgedEvent.__name__:
        return await log.of(headers, queue)
    cleared = {k: v for k, v in headers.items() if k not in ERROR_HEADERS}
    cleared[h.RETRY_COUNT] = 0
    return resent(message, cleared)

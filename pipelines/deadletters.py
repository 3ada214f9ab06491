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
from pipelines.messages import resent
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
    url = URL(settings.rabbitmq_url)
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
    """Move every message now in `dlq.{queue}` back to `queue`, its retry count reset."""
    dlq_name = queue if queue.startswith(DLQ_PREFIX) else DLQ_PREFIX + queue
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlq = await channel.declare_queue(dlq_name, passive=True)
        pending = dlq.declaration_result.message_count or 0
        moved = 0
        while moved < pending and (message := await dlq.get(fail=False)) is not None:
            await channel.default_exchange.publish(_redrive(message), original_queue(dlq_name))
            await message.ack()
            moved += 1
        return moved


def _redrive(message: aio_pika.abc.AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in ERROR_HEADERS}
    headers[h.RETRY_COUNT] = 0
    return resent(message, headers)

"""Messages that cannot succeed end in an answer or a dead letter, never in a requeue loop."""

import asyncio
import gzip
import json
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from pipelines.errors import PolicyViolation
from tests import sample

UNREACHABLE_DLQ = "dlq.service.sample.commands.Unreachable"


async def request_raw(settings, queue: str, body: bytes, **properties) -> AbstractIncomingMessage:
    """Publish `body` as it comes (no encoding by the platform's client) and await the reply."""
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(
            aio_pika.Message(body, reply_to=replies.name, correlation_id="raw", **properties),
            routing_key=queue,
        )
        async with replies.iterator() as messages:
            async for reply in messages:
                await reply.ack()
                return reply
    raise AssertionError("no reply")


async def queue_depth(settings, queue: str) -> int:
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_a_corrupt_gzip_command_is_answered_not_requeued(settings, sample_service) -> None:
    queue = "service.sample.commands.Increment"
    reply = await asyncio.wait_for(
        request_raw(settings, queue, b"\x1f\x8b not gzip at all", content_encoding="gzip"), 10
    )
    error = json.loads(reply.body)["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "gzip" in error["message"]
    assert await queue_depth(settings, queue) == 0


async def test_a_message_that_keeps_being_requeued_is_dead_lettered(
    settings, sample_service
) -> None:
    """Whatever the cause, past MAX_REDELIVERIES a message goes to its DLQ with the reason."""
    note = uuid.uuid4().hex
    async with await aio_pika.connect(settings.rabbitmq_url) as connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(UNREACHABLE_DLQ, durable=True, passive=True)
        await dlq.purge()
        await channel.default_exchange.publish(
            aio_pika.Message(sample.Unreachable(note=note).to_json()),
            routing_key="service.sample.commands.Unreachable",
        )
        letter = await _first(dlq, timeout=30)
    deliveries = settings.max_redeliveries + 1
    assert sample.unreachable_calls[note] == deliveries * settings.retry_attempts
    assert note.encode() in letter.body
    assert letter.headers["x-error-type"] == "RedeliveryLimit"
    error_message = letter.headers["x-error-message"]
    assert isinstance(error_message, str) and "ConnectionResetError" in error_message
    assert letter.headers["x-redelivery-count"] == settings.max_redeliveries


async def _first(queue: aio_pika.abc.AbstractQueue, timeout: float) -> AbstractIncomingMessage:
    async def wait() -> AbstractIncomingMessage:
        while (message := await queue.get(fail=False)) is None:
            await asyncio.sleep(0.05)  # polled: a dead letter announces itself to no one
        await message.ack()
        return message

    try:
        return await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        pytest.fail(f"nothing reached {queue.name} within {timeout}s")


async def test_a_policy_that_returns_nothing_refuses(sample_service, rpc) -> None:
    reply = await rpc.send("sample", sample.Permissive())
    with pytest.raises(PolicyViolation, match="forgets_to_answer"):
        reply.result()


async def test_a_gzip_bomb_is_refused_before_it_is_inflated(settings, sample_service) -> None:
    bomb = gzip.compress(b'{"counterId": "' + b"x" * (settings.max_message_bytes + 1) + b'"}')
    assert len(bomb) < 64 * 1024
    queue = "service.sample.commands.Increment"
    reply = await asyncio.wait_for(request_raw(settings, queue, bomb, content_encoding="gzip"), 10)
    error = json.loads(reply.body)["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == f"body over {settings.max_message_bytes} bytes once decompressed"


async def test_a_truncated_gzip_body_is_refused(settings, sample_service) -> None:
    cut = gzip.compress(b'{"counterId": "c"}')[:-8]
    queue = "service.sample.commands.Increment"
    reply = await asyncio.wait_for(request_raw(settings, queue, cut, content_encoding="gzip"), 10)
    assert json.loads(reply.body)["error"]["code"] == "VALIDATION_ERROR"

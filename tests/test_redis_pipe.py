"""Scripts over one pipelined connection (`pipelines.redispipe`): each call gets its own reply
however many are in flight, Redis's errors and failures reach the caller as redis-py's, and a
broken connection is replaced on the next call."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError, TimeoutError

from pipelines.redisclient import connect_redis
from pipelines.redispipe import RedisPipe
from pipelines.resp import Incomplete, Push, pack, reply
from pipelines.settings import Settings
from tests.tcp_proxy import free_port, proxy_for

ECHO = """
if ARGV[2] == 'nil' then return {KEYS[1], tonumber(ARGV[1]), false} end
return {KEYS[1], tonumber(ARGV[1]), ARGV[2]}
"""
FAIL = "return redis.call('INCR', KEYS[1])"  # on a key that holds text: WRONGTYPE-like error
TIMEOUT = 0.2


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    redis = connect_redis(settings)
    yield redis
    await redis.aclose()


def unique(text: str) -> str:
    """`text` as a script Redis has never seen (its SHA1 is new)."""
    return f"-- {uuid.uuid4().hex}\n{text}"


async def test_many_calls_in_flight_each_get_their_own_reply_over_one_connection(
    settings: Settings, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = RedisPipe(client)
    opened: list[object] = []
    make = pipe.pool.make_connection

    def counted() -> object:
        opened.append(connection := make())
        return connection

    monkeypatch.setattr(pipe.pool, "make_connection", counted)
    echo = pipe.script(ECHO)
    try:
        replies = await asyncio.gather(
            *(echo(keys=[f"{settings.cache_prefix}:k{i}"], args=[i, f"v{i}"]) for i in range(300))
        )
    finally:
        await pipe.close()
    assert replies == [[f"{settings.cache_prefix}:k{i}".encode(), i, f"v{i}".encode()]
                       for i in range(300)]  # fmt: skip
    assert len(opened) == 1


async def test_calls_made_together_go_out_in_one_write(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = RedisPipe(client)
    echo = pipe.script(ECHO)
    try:
        await echo(keys=["k"], args=[0, "open"])
        assert pipe._link is not None
        transport, writes = pipe._link.transport, []
        write = transport.write

        def counted(data: bytes) -> None:
            writes.append(data)
            write(data)

        monkeypatch.setattr(transport, "write", counted)
        replies = await asyncio.gather(*(echo(keys=["k"], args=[i, "x"]) for i in range(50)))
    finally:
        await pipe.close()
    assert replies == [[b"k", i, b"x"] for i in range(50)] and len(writes) == 1


async def test_a_reply_longer_than_one_read_is_read_whole(client: aioredis.Redis) -> None:
    pipe = RedisPipe(client)
    echo, long = pipe.script(ECHO), "x" * 300_000
    try:
        replies = await asyncio.gather(*(echo(keys=["k"], args=[i, long]) for i in range(3)))
    finally:
        await pipe.close()
    assert replies == [[b"k", i, long.encode()] for i in range(3)]


async def test_a_script_redis_lacks_is_sent_whole_once(client: aioredis.Redis) -> None:
    pipe = RedisPipe(client)
    script = pipe.script(unique(ECHO))
    try:
        assert await client.script_exists(script.sha.decode()) == [False]
        assert await script(keys=["k"], args=[1, "nil"]) == [b"k", 1, None]
        assert await client.script_exists(script.sha.decode()) == [True]
    finally:
        await pipe.close()


async def test_an_error_reply_fails_its_call_alone(
    settings: Settings, client: aioredis.Redis
) -> None:
    key = f"{settings.cache_prefix}:text:{uuid.uuid4().hex}"
    await client.set(key, "not a number")
    pipe = RedisPipe(client)
    fail, echo = pipe.script(FAIL), pipe.script(ECHO)
    try:
        failed: object
        echoed: object
        failed, echoed = await asyncio.gather(
            fail(keys=[key], args=[]), echo(keys=["k"], args=[2, "x"]), return_exceptions=True
        )
        assert isinstance(failed, ResponseError) and "not an integer" in str(failed)
        assert echoed == [b"k", 2, b"x"]
    finally:
        await pipe.close()
        await client.delete(key)


async def test_a_message_redis_sends_of_its_own_answers_no_call(
    settings: Settings, client: aioredis.Redis
) -> None:
    key = f"{settings.cache_prefix}:tracked:{uuid.uuid4().hex}"
    pipe = RedisPipe(client)
    try:
        assert await pipe.call(b"CLIENT", b"TRACKING", b"ON") == b"OK"
        assert await pipe.call(b"GET", key) is None
        await client.set(key, "changed")  # Redis tells the pipe's connection: a push message
        assert await pipe.call(b"PING") == b"PONG"
        assert await pipe.call(b"GET", key) == b"changed"
    finally:
        await pipe.close()
        await client.delete(key)


async def test_a_frozen_redis_fails_the_calls_in_time_and_a_new_connection_follows(
    settings: Settings,
) -> None:
    proxy, port, through = proxy_for(settings.redis_url)
    await proxy.start(port)
    client = connect_redis(settings.model_copy(update={"redis_url": through,
                                                       "redis_timeout": TIMEOUT}))  # fmt: skip
    pipe = RedisPipe(client)
    echo = pipe.script(ECHO)
    try:
        assert await echo(keys=["k"], args=[1, "a"]) == [b"k", 1, b"a"]
        proxy.freeze()
        started = time.perf_counter()
        failed = await asyncio.gather(
            *(echo(keys=["k"], args=[i, "a"]) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(f, TimeoutError) for f in failed), failed
        assert time.perf_counter() - started < 3 * TIMEOUT
        proxy.thaw()  # the old connection's replies come now, and must answer no one
        assert await echo(keys=["k"], args=[7, "b"]) == [b"k", 7, b"b"]
    finally:
        await pipe.close()
        await client.aclose()
        await proxy.stop()


async def test_without_redis_a_call_fails_as_through_redis_py(settings: Settings) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    client = connect_redis(settings.model_copy(update={"redis_url": nowhere}))
    pipe = RedisPipe(client)
    try:
        with pytest.raises(ConnectionError):
            await pipe.script(ECHO)(keys=["k"], args=[1, "a"])
    finally:
        await pipe.close()
        await client.aclose()


async def test_a_client_speaking_resp3_gets_the_same_replies(settings: Settings) -> None:
    """With `protocol=3` in the client's URL the pipe's connection speaks RESP3: a script's Lua
    false (a key GET found missing) still reads as nil, and the connection stays in use."""
    redis = aioredis.Redis.from_url(f"{settings.redis_url}?protocol=3")
    pipe = RedisPipe(redis)
    echo = pipe.script(ECHO)
    try:
        assert redis.connection_pool.connection_kwargs["protocol"] == 3
        assert await echo(["k"], [1, "nil"]) == [b"k", 1, None]
        assert await echo(["k"], [2, "kept"]) == [b"k", 2, b"kept"]
    finally:
        await pipe.close()
        await redis.aclose()


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert pack((b"EVALSHA", "é", 5)) == b"*3\r\n$7\r\nEVALSHA\r\n$2\r\n\xc3\xa9\r\n$1\r\n5\r\n"


def test_replies_are_read_whole_or_not_at_all() -> None:
    whole = b"*4\r\n:-3\r\n$5\r\nab\r\nc\r\n$-1\r\n*2\r\n_\r\n+OK\r\n-ERR no\r\n"
    value, end = reply(whole, 0)
    assert value == [-3, b"ab\r\nc", None, [None, b"OK"]]
    error, last = reply(whole, end)
    assert isinstance(error, ResponseError) and str(error) == "ERR no" and last == len(whole)
    for cut in range(end):
        with pytest.raises(Incomplete):
            reply(whole[:cut], 0)
    push, _ = reply(b">2\r\n$4\r\nMOVE\r\n:1\r\n", 0)
    assert isinstance(push, Push) and push == [b"MOVE", 1]
    with pytest.raises(InvalidResponse):
        reply(b"%1\r\n", 0)

"""The scan path's thin pipelined Redis client against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ingest.ops.local_services import free_port
from ingest.store.pipe import RedisPipe


@pytest.mark.redis
async def test_replies_in_order_with_errors_in_place(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, 2.0)
    try:
        replies = await pipe.execute(
            [("SET", "k", b"v\x00\xff"), ("GET", "k"), ("INCR", "k"), ("EVALSHA", "0" * 40, 0)]
        )
        assert replies[:2] == [b"OK", b"v\x00\xff"]
        assert isinstance(replies[2], ResponseError)
        assert isinstance(replies[3], NoScriptError)
        many = await asyncio.gather(*(pipe.execute([("INCR", "n")] * 3) for _ in range(50)))
        assert sorted(value for replies in many for value in replies) == list(range(1, 151))
    finally:
        await pipe.close()


@pytest.mark.redis
async def test_the_database_of_the_url_is_selected(redis_url: str) -> None:
    pipe = RedisPipe(redis_url.rsplit("/", 1)[0] + "/3", 2.0)
    try:
        await pipe.execute([("SET", "in-three", 1)])
    finally:
        await pipe.close()
    with redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3") as three:
        assert three.get("in-three") == b"1"


BUSY_FOR_A_SECOND = """
local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end
local start = now()
while now() - start < 1e6 do end
return 1
"""


@pytest.mark.redis
async def test_a_late_reply_is_a_timeout_and_the_next_call_reconnects(redis_url: str) -> None:
    pipe = RedisPipe(redis_url, 0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await pipe.execute(
                [
                    (
                        "EVAL",
                        BUSY_FOR_A_SECOND,
                        0,
                    )
                ]
            )
        await asyncio.sleep(1.0)  # the script ends
        assert await pipe.execute([("PING",)]) == [b"PONG"]
    finally:
        await pipe.close()


async def test_no_server_is_a_connection_error() -> None:
    pipe = RedisPipe(f"redis://127.0.0.1:{free_port()}/0", 1.0)
    with pytest.raises(RedisConnectionError):
        await pipe.execute([("PING",)])

"""Error replies a script declares arrive as their domain exceptions, from both script runners
and over both async clients; any other error reply stays a Redis ``ResponseError``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from codes import batches
from codes.batches import BatchOrder
from codes.commands import LuaScript, ScriptCall
from codes.errors import BatchError
from codes.signing import MAX_SERIAL
from ingest.store.batches import BatchStore
from ingest.store.pipe import RedisPipe
from ingest.store.scripts import BlockingScriptRunner, RedisPyCommands, ScriptRunner

pytestmark = pytest.mark.redis


class Refused(Exception):
    pass


REFUSING = LuaScript(
    "refusing.lua",
    """
    if ARGV[1] == 'declared' then return redis.error_reply('REFUSED the reason given') end
    if ARGV[1] == 'undeclared' then return redis.error_reply('REFUSED_TOO another reason') end
    return ARGV[1]
    """,
    {"REFUSED": Refused},
)


def _call(answer: str) -> ScriptCall:
    return ScriptCall(REFUSING, ("{t}:k",), (answer,))


@pytest.fixture(params=["redis-py", "pipe"])
async def runner(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[ScriptRunner]:
    if request.param == "pipe":
        pipe = RedisPipe(redis_url, 2.0)
        yield ScriptRunner(pipe)
        await pipe.close()
    else:
        client = Redis.from_url(redis_url)
        yield ScriptRunner(RedisPyCommands(client))
        await client.aclose()


async def test_run_raises_a_declared_error_as_its_exception(runner: ScriptRunner) -> None:
    with pytest.raises(Refused, match=r"^the reason given$"):
        await runner.run(_call("declared"))
    with pytest.raises(ResponseError, match=r"^REFUSED_TOO another reason$"):
        await runner.run(_call("undeclared"))


async def test_run_many_puts_each_error_in_its_place(runner: ScriptRunner) -> None:
    replies = await runner.run_many(
        [
            _call("declared"),
            ("INCR", "{t}:n"),
            _call("undeclared"),
            _call("fine"),
            ("HGET", "{t}:n", "field"),
        ]
    )
    declared, counted, undeclared, fine, wrong_type = replies
    assert isinstance(declared, Refused)
    assert (counted, fine) == (1, b"fine")
    assert isinstance(undeclared, ResponseError)
    assert not isinstance(undeclared, Refused)
    assert isinstance(wrong_type, ResponseError)  # a command's own error: no script declares it


def test_the_blocking_runner_raises_declared_errors_too(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        runner = BlockingScriptRunner(client)
        assert runner.run(_call("fine")) == b"fine"
        with pytest.raises(Refused, match=r"^the reason given$"):
            runner.run(_call("declared"))
        with pytest.raises(ResponseError, match=r"^REFUSED_TOO another reason$"):
            runner.run(_call("undeclared"))


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[BatchStore]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield BatchStore(client)
    await client.aclose()


ORDER = BatchOrder.create("BEER-500", "4006381333931", 10, max_quantity=100)


async def test_a_taken_batch_id_is_drawn_again(
    store: BatchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = await store.create(ORDER, 0)
    ids = iter([taken.batch_id, "BFRESH"])
    monkeypatch.setattr(batches, "new_batch_id", lambda: next(ids))
    again = await store.create(ORDER, 0)
    assert (again.batch_id, again.first_serial) == ("BFRESH", taken.last_serial + 1)


async def test_a_batch_past_the_serial_space_is_a_batch_error(
    store: BatchStore, redis_url: str
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set(batches.NEXT_SERIAL_KEY, MAX_SERIAL - 5)
    with pytest.raises(BatchError, match=r"^the 40-bit serial space cannot hold this batch$"):
        await store.create(ORDER, 0)

"""The micro-batcher's bookkeeping, with the decision replaced by gates the test opens."""

from __future__ import annotations

import asyncio

import pytest

from ingest.errors import ApiError, Unavailable
from ingest.scan.batcher import MicroBatcher

Queued = tuple[int, "asyncio.Future[str]"]


class Gates:
    """A decide callable: each micro-batch waits for the test to open its gate, then answers
    every item "ok"."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Future[None]] = []
        self.sizes: list[int] = []

    async def __call__(self, micro_batch: list[Queued]) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        self.sizes.append(len(micro_batch))
        await gate
        for _, future in micro_batch:
            future.set_result("ok")

    def open_all(self) -> None:
        for gate in self.gates:
            if not gate.done():
                gate.set_result(None)


async def test_an_item_submitted_as_both_micro_batches_finish_is_still_answered() -> None:
    gates = Gates()
    batcher = MicroBatcher[int, str](gates)
    batcher.submit([1])
    await asyncio.sleep(0)
    batcher.submit([2])
    await asyncio.sleep(0)
    assert len(gates.gates) == 2  # two micro-batches in flight
    for gate in gates.gates:
        gate.set_result(None)  # both decisions end in one step ...
    late: list[asyncio.Future[str]] = []
    asyncio.get_running_loop().call_soon(lambda: late.extend(batcher.submit([3])))
    await asyncio.sleep(0.01)  # ... with a request parsed in the same step
    gates.open_all()
    assert await asyncio.wait_for(late[0], 1) == "ok"


async def test_one_tick_is_one_micro_batch_and_the_in_flight_limit_holds() -> None:
    gates = Gates()
    batcher = MicroBatcher[int, str](gates, max_micro_batch=3, max_in_flight=2)
    answers = batcher.submit(list(range(8)))
    await asyncio.sleep(0)
    assert gates.sizes == [3]  # one drain takes the tick's items, a micro-batch at a time
    answers += batcher.submit([8])
    await asyncio.sleep(0)
    assert gates.sizes == [3, 3]  # the second drain: at most two wait at once
    batcher.submit([9])
    await asyncio.sleep(0)
    assert len(gates.gates) == 2
    while not all(a.done() for a in answers):
        gates.open_all()
        await asyncio.sleep(0)
    assert sorted(gates.sizes) == [1, 3, 3, 3]  # ten items, three at most to a micro-batch


async def test_close_answers_everything_queued_and_refuses_more() -> None:
    gates = Gates()
    batcher = MicroBatcher[int, str](gates)
    answers = [f for n in range(5) for f in batcher.submit([n])]
    closing = asyncio.ensure_future(batcher.close())
    while not closing.done():
        gates.open_all()
        await asyncio.sleep(0)
    assert [a.result() for a in answers] == ["ok"] * 5
    with pytest.raises(Unavailable):
        batcher.submit([6])


async def test_a_failed_decision_answers_what_it_left_with_an_internal_error() -> None:
    async def decide_half(micro_batch: list[Queued]) -> None:
        micro_batch[0][1].set_result("ok")
        raise RuntimeError("a bug")

    batcher = MicroBatcher[int, str](decide_half)
    first, second = batcher.submit([1, 2])
    assert await first == "ok"
    with pytest.raises(ApiError, match="internal error"):
        await second

"""The micro-batcher's bookkeeping, with Redis replaced by gates the test opens."""

from __future__ import annotations

import asyncio
from typing import Any

from ingest.scan.pipeline import ScanPipeline
from ingest.scan.request import ScanRequest


class _GatedPipeline(ScanPipeline):
    """Each batch waits for the test to open its gate, then answers every scan "ok"."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Future[None]] = []
        super().__init__(
            scripts=None,  # type: ignore[arg-type]
            verifiers=None,  # type: ignore[arg-type]
            fraud=None,  # type: ignore[arg-type]
            rewards=None,  # type: ignore[arg-type]
            max_unsunk_events=16,
            scan_id_ttl_s=1,
        )

    async def _decide(self, batch: list[Any]) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        for _, future in batch:
            future.set_result("ok")


def _request() -> ScanRequest:
    return ScanRequest("CODE", None, None, None, "", "", None, 0, "", 0)


async def test_a_scan_submitted_as_both_batches_finish_is_still_answered() -> None:
    pipeline = _GatedPipeline()
    pipeline.submit([_request()])
    await asyncio.sleep(0)
    pipeline.submit([_request()])
    await asyncio.sleep(0)
    assert len(pipeline.gates) == 2  # two batches in flight
    for gate in pipeline.gates:
        gate.set_result(None)  # both replies arrive in one step ...
    late: list[asyncio.Future[Any]] = []
    asyncio.get_running_loop().call_soon(lambda: late.extend(pipeline.submit([_request()])))
    await asyncio.sleep(0.01)  # ... with a request parsed in the same step
    for gate in pipeline.gates[2:]:
        gate.set_result(None)
    assert await asyncio.wait_for(late[0], 1) == "ok"


async def test_close_answers_everything_queued() -> None:
    pipeline = _GatedPipeline()
    answers: list[asyncio.Future[Any]] = [
        f for _ in range(5) for f in pipeline.submit([_request()])
    ]
    closing = asyncio.ensure_future(pipeline.close())
    while not closing.done():
        for gate in pipeline.gates:
            if not gate.done():
                gate.set_result(None)
        await asyncio.sleep(0)
    assert [a.result() for a in answers] == ["ok"] * 5

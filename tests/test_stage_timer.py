"""The scan path's stage timers: alone, and through the app's /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY

from ingest import stage_timer
from ingest.stage_timer import StageTimer
from tests.helpers import ADMIN, batch_codes, order_shipped_batch, post_scan
from tests.test_api_campaigns import campaign, put_campaign

COUNTER = "scanward_scan_stage_seconds"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The timers' clock: each reading takes the next of these nanoseconds."""
    readings: list[int] = []
    monkeypatch.setattr(stage_timer, "perf_counter_ns", lambda: readings.pop(0))
    yield readings
    assert not readings, "the test meant the timers to read the clock more often"


@pytest.fixture
def verify_timer() -> StageTimer:
    """The verify stage's timer with nothing pending (the app tests of this process time it)."""
    stage_timer.VERIFY.publish()
    return stage_timer.VERIFY


def _published(stage: str) -> float:
    value = REGISTRY.get_sample_value(f"{COUNTER}_total", {"stage": stage})
    assert value is not None
    return value


def test_the_stages_in_the_order_a_scan_meets_them() -> None:
    stages = [timer.stage for timer in stage_timer.STAGES]
    assert stages == ["parse", "verify", "fraud", "record", "redis_client", "rewards", "respond"]


def test_every_stage_is_shown_before_it_is_timed() -> None:
    for timer in stage_timer.STAGES:
        assert _published(timer.stage) >= 0


def test_a_block_adds_its_time_to_its_stage_only(
    clock: list[int], verify_timer: StageTimer
) -> None:
    others = {timer: timer.pending_ns for timer in stage_timer.STAGES if timer is not verify_timer}
    clock.extend([1_000, 4_000, 10_000, 10_500])
    with verify_timer:
        pass
    with verify_timer:
        pass
    assert verify_timer.pending_ns == 3_500
    assert {timer: timer.pending_ns for timer in others} == others


def test_a_block_that_raises_still_counts(clock: list[int], verify_timer: StageTimer) -> None:
    clock.extend([1_000, 3_000])
    with pytest.raises(ValueError, match="bad scan"), verify_timer:
        raise ValueError("bad scan")
    assert verify_timer.pending_ns == 2_000


def test_publish_adds_the_pending_time_to_the_counter_once(
    clock: list[int], verify_timer: StageTimer
) -> None:
    before = _published("verify")
    clock.extend([0, 1_500_000_000])
    with verify_timer:
        pass
    stage_timer.publish()
    stage_timer.publish()
    assert _published("verify") - before == pytest.approx(1.5)
    assert verify_timer.pending_ns == 0


class _NestingWatch:
    """Notes a stage's region entered while another is open: regions must not nest, and one
    that spanned an ``await`` would show up here when another request's region ran meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open: list[str] = []
        self.nested: list[tuple[str, str]] = []
        enter, leave = StageTimer.__enter__, StageTimer.__exit__

        def watched_enter(timer: StageTimer) -> None:
            if self.open:
                self.nested.append((self.open[-1], timer.stage))
            self.open.append(timer.stage)
            enter(timer)

        def watched_exit(
            timer: StageTimer,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            traceback: TracebackType | None,
        ) -> None:
            self.open.pop()
            leave(timer, exc_type, exc, traceback)

        monkeypatch.setattr(StageTimer, "__enter__", watched_enter)
        monkeypatch.setattr(StageTimer, "__exit__", watched_exit)


async def _stage_seconds(client: TestClient[Any, Any]) -> dict[str, float]:
    reply = await client.get("/metrics", headers=ADMIN)
    assert reply.status == 200
    return {
        sample.labels["stage"]: sample.value
        for family in text_string_to_metric_families(await reply.text())
        if family.name == COUNTER
        for sample in family.samples
        if sample.name == f"{COUNTER}_total"
    }


@pytest.mark.redis
async def test_scans_single_and_bulk_show_time_in_every_stage(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await put_campaign(client, campaign())
    batch = await order_shipped_batch(client)
    codes = await batch_codes(client, batch["batch_id"], limit=12)
    watch = _NestingWatch(monkeypatch)
    before = await _stage_seconds(client)

    await asyncio.gather(
        *(post_scan(client, {"code": code, "member_id": f"m{n}"}) for n, code in enumerate(codes))
    )
    lines = [{"code": code, "member_id": "bulk"} for code in codes] + [{"code": ""}]
    bulk = await client.post(
        "/v1/scans/bulk",
        data=b"\n".join(orjson.dumps(line) for line in lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert bulk.status == 200
    # the batch of this scan publishes the time the answers above took to respond
    await post_scan(client, {"code": codes[0]})
    after = await _stage_seconds(client)

    assert watch.nested == []
    assert set(after) == {timer.stage for timer in stage_timer.STAGES}
    assert {stage: after[stage] > before[stage] for stage in after} == dict.fromkeys(after, True)

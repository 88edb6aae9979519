"""The scan path: micro-batches of scans, verified in-process, judged by the fraud stage,
decided in Redis, and drawn for prizes.

Handlers ``submit`` parsed scans to the micro-batcher (``ingest.scan.batcher``) and await their
futures. A micro-batch costs two pipelined round trips: the fraud stage's (code histories and
actor counters, see ``ingest.scan.fraud_stage``), then one ``scan_state.lua`` call per
partition, each of which updates the scan state and appends the events in one atomic step (with
the tiers of the members who may win a prize). A micro-batch with scans under an open campaign
takes a third: one ``draw.lua`` call per campaign (``ingest.scan.reward_stage``), only for scans
whose events Redis has recorded. An answer is given only after Redis has acknowledged its event.
The decisions themselves are the steps of ``ingest.scan.steps``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from fraud.velocity import address_actor
from ingest import metrics, stage_timer
from ingest.errors import ApiError, TooManyRequests, Unavailable
from ingest.events.partitions import Partitions
from ingest.events.scans import MAX_EVENTS_PER_ENTRY
from ingest.scan.batcher import MicroBatcher, fail
from ingest.scan.fraud_stage import FraudStage
from ingest.scan.refusals import refusal
from ingest.scan.request import ScanRequest
from ingest.scan.result import ScanResult
from ingest.scan.reward_stage import RewardStage
from ingest.scan.state import ScanState, StreamFull, decide_scans, unsunk_limit_per_partition
from ingest.scan.steps import (
    Judged,
    Pending,
    Prepared,
    Verified,
    each_alone,
    entrant,
    facts_of,
    may_win,
    prepare,
    result,
    verify,
)
from ingest.store.outage import STORE_FAILURES
from ingest.store.scripts import ScriptRunner
from ingest.store.verifiers import VerifierSource

log = logging.getLogger(__name__)

Queued = tuple[ScanRequest, asyncio.Future[ScanResult]]
VERIFIER_MAX_AGE_S = 0.1
_RETRY_AFTER_S = 2


class ScanPipeline:
    def __init__(
        self,
        scripts: ScriptRunner,
        verifiers: VerifierSource,
        fraud: FraudStage,
        rewards: RewardStage,
        partitions: Partitions,
        max_unsunk_events: int,
        scan_id_ttl_s: int,
    ) -> None:
        self._scripts = scripts
        self._partitions = partitions
        self._verifiers = verifiers
        self._fraud = fraud
        self._rewards = rewards
        self._max_unsunk_per_partition = unsunk_limit_per_partition(max_unsunk_events, partitions)
        self._scan_id_ttl_s = scan_id_ttl_s
        self._batcher = MicroBatcher[ScanRequest, ScanResult](self._decide)

    def submit(self, requests: Sequence[ScanRequest]) -> list[asyncio.Future[ScanResult]]:
        return self._batcher.submit(requests)

    async def check_code(self, address: str, invalid: bool) -> TooManyRequests | None:
        """A check of a code (``GET /v1/codes``) from ``address``, counted toward its guessing
        limit; the refusal when the address is blocked for guessing."""
        return await self._fraud.check(address_actor(address), invalid, int(time.time()))

    async def close(self) -> None:
        """Refuse new scans and finish the queued ones."""
        await self._batcher.close()

    async def _decide(
        self, micro_batch: list[tuple[ScanRequest, asyncio.Future[ScanResult]]]
    ) -> None:
        try:
            await self._decide_all([Pending(*queued) for queued in micro_batch])
        except STORE_FAILURES as error:
            log.error("scan micro-batch failed: Redis is unavailable: %s", error)
            fail(micro_batch, refusal(error))

    async def _decide_all(self, micro_batch: list[Pending]) -> None:
        now_ms = time.time_ns() // 1_000_000
        verified = await self._verified(micro_batch)
        judged = await self._judged(verified, now_ms)
        with stage_timer.RECORD:
            prepared = each_alone(judged, lambda j: prepare(j, now_ms, self._partitions))
            groups = _partition_groups(prepared)
            calls = [
                decide_scans(
                    self._partitions,
                    partition,
                    [p.argument for p in group],
                    self._max_unsunk_per_partition,
                    self._scan_id_ttl_s,
                )
                for partition, group in groups
            ]
        with stage_timer.REWARDS:
            contenders = [p for p in prepared if may_win(p)]
            candidates = [entrant(p) for p in contenders]
        plan = await self._rewards.plan(candidates, now_ms)
        with stage_timer.REWARDS:
            tier_reads = plan.reads()
        started = time.perf_counter()
        replies = await self._scripts.run_many([*calls, *tier_reads])
        metrics.REDIS_ROUND_TRIP.observe(time.perf_counter() - started)
        metrics.MICRO_BATCH_SIZE.observe(len(micro_batch))
        with stage_timer.RECORD:
            recorded = [
                pair
                for (_, group), reply in zip(groups, replies[: len(calls)], strict=True)
                for pair in _recorded(group, reply)
            ]
            recorded_ids = {id(p) for p, _ in recorded}
            drawn = [id(c) in recorded_ids for c in contenders]
        won = await self._rewards.draw(plan, candidates, replies[len(calls) :], drawn)
        with stage_timer.RECORD:
            prizes = {id(contenders[index]): prize for index, prize in won.items()}
            for scan, state in recorded:
                prize = prizes.get(id(scan))
                if scan.future.done():
                    continue
                if isinstance(prize, Unavailable):  # recorded, but its draw's outcome unknown
                    scan.future.set_exception(prize)
                else:
                    scan.future.set_result(result(scan, state, prize))
        stage_timer.publish()  # the handlers' times pending too: once per micro-batch is cheap

    async def _verified(self, micro_batch: list[Pending]) -> list[Verified]:
        """Each code checked; when a code may be unknown only to an old copy of the batches and
        keys (a code batch ordered a moment ago), all are checked again against a fresh one."""
        verifier = await self._verifiers.current(VERIFIER_MAX_AGE_S)
        with stage_timer.VERIFY:
            verified = each_alone(micro_batch, lambda p: verify(p, verifier))
        if any(v.maybe_stale for v in verified):
            fresh = await self._verifiers.current()
            if fresh is not verifier:
                with stage_timer.VERIFY:
                    verified = each_alone([v.pending for v in verified], lambda p: verify(p, fresh))
        return verified

    async def _judged(self, verified: list[Verified], now_ms: int) -> list[Judged]:
        """The fraud stage's assessments; the scans it refuses are answered here and left out."""
        with stage_timer.FRAUD:
            facts = [facts_of(v, now_ms) for v in verified]
        assessments = await self._fraud.judge(facts, now_ms)
        with stage_timer.FRAUD:
            judged = []
            for scan, fact, assessment in zip(verified, facts, assessments, strict=True):
                if isinstance(assessment, ApiError):
                    if isinstance(assessment, TooManyRequests):
                        metrics.SCANS_BLOCKED.inc()
                    scan.future.set_exception(assessment)
                else:
                    judged.append(Judged(scan, assessment, fact))
            return judged


def _partition_groups(prepared: list[Prepared]) -> list[tuple[int, list[Prepared]]]:
    """The scans of each partition, at most ``MAX_EVENTS_PER_ENTRY`` to a script call."""
    by_partition: dict[int, list[Prepared]] = defaultdict(list)
    for scan in prepared:
        by_partition[scan.partition].append(scan)
    return [
        (partition, scans[start : start + MAX_EVENTS_PER_ENTRY])
        for partition, scans in by_partition.items()
        for start in range(0, len(scans), MAX_EVENTS_PER_ENTRY)
    ]


def _recorded(group: list[Prepared], reply: object) -> list[tuple[Prepared, ScanState]]:
    """The state of each scan the script recorded; on an error its scans are answered here."""
    if isinstance(reply, StreamFull):
        metrics.SCANS_REFUSED.inc(len(group))
        _fail_all(
            group,
            Unavailable(
                "scans are arriving faster than they can be stored; retry shortly",
                "backlog_full",
                _RETRY_AFTER_S,
            ),
        )
        return []
    if isinstance(reply, STORE_FAILURES):
        _fail_all(group, refusal(reply))
        return []
    if isinstance(reply, Exception):
        log.error("scan state script failed: %s", reply)
        _fail_all(group, ApiError("internal error"))
        return []
    assert isinstance(reply, list)
    states = [(p, ScanState.from_reply(r)) for p, r in zip(group, reply, strict=True)]
    counts = Counter(p.judged.assessment.verdict for p, state in states if not state.retried)
    for verdict, count in counts.items():
        metrics.SCANS.labels(verdict.label).inc(count)
    return states


def _fail_all(group: list[Prepared], error: Exception) -> None:
    for scan in group:
        if not scan.future.done():
            scan.future.set_exception(error)

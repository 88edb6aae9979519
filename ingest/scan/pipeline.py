"""The scan path: micro-batches of scans, verified in-process, judged by the fraud stage,
decided in Redis, and drawn for prizes.

Handlers ``submit`` parsed scans and await their futures. The first submission of a loop tick
starts a drain task; by the time it runs, every request parsed in that tick is queued. While a
batch waits on Redis the next one gathers, and up to ``MAX_BATCHES_IN_FLIGHT`` batches wait at
once (one alone left the loop idle while its reply sat behind other work). A batch costs two
pipelined round trips: the fraud stage's (code histories and actor counters, see
``ingest.scan.fraud_stage``), then one ``scan_state.lua`` call per partition, each of which updates
the scan state and appends the events in one atomic step (with the tiers of the members who may
win a prize). A batch with scans under an open campaign takes a third: one ``draw.lua``
call per campaign (``ingest.scan.reward_stage``), only for scans whose events Redis has
recorded. An answer is given only after Redis has acknowledged its event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar, cast

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codes.batches import BatchStatus
from codes.errors import CodeError
from codes.verify import VerifiedCode, Verifier
from fraud.assessment import Assessment, ScanFacts
from fraud.location import NO_SERIAL
from fraud.verdicts import Verdict
from ingest import metrics, stage_timer
from ingest.errors import ApiError, Unavailable
from ingest.events.scans import MAX_EVENTS_PER_ENTRY, ScanEvent
from ingest.scan.fraud_stage import FraudStage
from ingest.scan.request import ScanRequest
from ingest.scan.reward_stage import RewardStage, Won
from ingest.scan.state import (
    STREAM_FULL,
    ScanState,
    decide_scans,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    partition_of_text,
    retry_key,
    scan_argument,
    unsunk_limit_per_partition,
)
from ingest.store.scripts import ScriptRunner
from ingest.store.verifiers import VerifierSource
from rewards.draws import Entrant

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 4096
MAX_BATCHES_IN_FLIGHT = 2
# server-made scan ids: a random per-process prefix and a counter (os.urandom per scan costs a
# system call; these need to be unique, not secret)
_SCAN_ID_PREFIX = secrets.token_hex(6)
_SCAN_IDS = (f"{_SCAN_ID_PREFIX}{n:x}" for n in itertools.count())
VERIFIER_MAX_AGE_S = 0.1
_RETRY_AFTER_S = 2


class ScanResult(NamedTuple):
    scan_id: str
    verdict: Verdict
    risk: int
    flags: tuple[dict[str, object], ...]
    product: dict[str, object] | None
    state: ScanState
    prize: Won | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "scan_id": self.scan_id,
            "verdict": self.verdict.label,
            "genuine": self.verdict is Verdict.GENUINE,
            "risk": self.risk,
            "first_scan": self.state.first_scan,
            "scan_count": self.state.scan_count,
            "distinct_devices": self.state.distinct_devices,
            "flags": list(self.flags),
            "product": self.product,
            "prize": self.prize.to_json() if self.prize else None,
        }


_Queued = tuple[ScanRequest, "asyncio.Future[ScanResult]"]


@dataclass(slots=True, eq=False)  # hashed by identity: results are kept per decision
class _Decision:
    """What the server decided about one scan before Redis has been asked."""

    request: ScanRequest
    future: asyncio.Future[ScanResult]
    scan_id: str = ""
    verdict: Verdict = Verdict.GENUINE
    flags: tuple[dict[str, object], ...] = ()  # what verification found, then every rule's
    assessment: Assessment | None = None
    facts: ScanFacts | None = None  # what the fraud stage was given, digests included
    product: dict[str, object] | None = None
    partition: int = 0
    argument: bytes = b""
    retry_key: str = ""
    verified: VerifiedCode | None = None
    canonical: str = ""


class ScanPipeline:
    def __init__(
        self,
        scripts: ScriptRunner,
        verifiers: VerifierSource,
        fraud: FraudStage,
        rewards: RewardStage,
        max_unsunk_events: int,
        scan_id_ttl_s: int,
    ) -> None:
        self._scripts = scripts
        self._verifiers = verifiers
        self._fraud = fraud
        self._rewards = rewards
        self._max_unsunk_per_partition = unsunk_limit_per_partition(max_unsunk_events)
        self._scan_id_ttl_s = scan_id_ttl_s
        self._queue: list[_Queued] = []
        self._drains: set[asyncio.Task[None]] = set()
        self._drains_not_started = 0
        self._closing = False

    def submit(self, requests: Sequence[ScanRequest]) -> list[asyncio.Future[ScanResult]]:
        if self._closing:
            raise Unavailable("the server is shutting down; retry shortly")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        self._queue.extend(zip(requests, futures, strict=True))
        self._start_drain()
        return futures

    async def close(self) -> None:
        """Refuse new scans and finish the queued ones."""
        self._closing = True
        while self._drains or self._queue:
            self._start_drain()
            await asyncio.gather(*self._drains)

    def _start_drain(self) -> None:
        """A drain for the queue unless one is about to start (it will take the whole queue) or
        ``MAX_BATCHES_IN_FLIGHT`` are busy (the first to finish takes what has queued up)."""
        busy = len(self._drains) >= MAX_BATCHES_IN_FLIGHT
        if self._queue and not self._drains_not_started and not busy:
            self._drains_not_started += 1
            self._drains.add(asyncio.get_running_loop().create_task(self._drain_queue()))

    async def _drain_queue(self) -> None:
        """Takes batches until the queue is empty. A second drain may start while this one
        waits for Redis, so the scans that arrive meanwhile need not wait for its reply."""
        self._drains_not_started -= 1
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._decide(batch)
                except (RedisConnectionError, RedisTimeoutError) as error:
                    log.error("scan batch failed: Redis is unreachable: %s", error)
                    _fail(batch, _outcome_unknown(error))
                except Exception:
                    log.exception("scan batch of %d failed", len(batch))
                    _fail(batch, ApiError("internal error"))
        finally:
            # removed here, not by a done-callback, so a submit in the same step sees it gone
            self._drains.discard(cast("asyncio.Task[None]", asyncio.current_task()))

    async def _decide(self, batch: list[_Queued]) -> None:
        verifier = await self._verifiers.current(VERIFIER_MAX_AGE_S)
        now_ms = time.time_ns() // 1_000_000
        with stage_timer.VERIFY:
            decisions = [_Decision(request, future) for request, future in batch]
            verified = _alone(decisions, lambda d: _verify(d, verifier))
        if not all(verified.values()):  # a batch or key newer than our copy: look again
            fresh = await self._verifiers.current()
            if fresh is not verifier:
                with stage_timer.VERIFY:
                    verified = _alone(list(verified), lambda d: _verify(d, fresh))
        judged = await self._judge(list(verified), now_ms)
        with stage_timer.RECORD:
            prepared = list(_alone(judged, lambda d: _prepare(d, now_ms)))
            by_partition: dict[int, list[_Decision]] = defaultdict(list)
            for decision in prepared:
                by_partition[decision.partition].append(decision)
            groups = [
                (partition, decisions[start : start + MAX_EVENTS_PER_ENTRY])
                for partition, decisions in by_partition.items()
                for start in range(0, len(decisions), MAX_EVENTS_PER_ENTRY)
            ]
            calls = [
                decide_scans(
                    partition,
                    [d.argument for d in group],
                    self._max_unsunk_per_partition,
                    self._scan_id_ttl_s,
                )
                for partition, group in groups
            ]
        with stage_timer.REWARDS:
            contenders = [d for d in prepared if _may_win(d)]
            candidates = [_entrant(d) for d in contenders]
        plan = await self._rewards.plan(candidates, now_ms)
        with stage_timer.REWARDS:
            tier_reads = plan.reads()
        started = time.perf_counter()
        replies = await self._scripts.run_many([*calls, *tier_reads])
        metrics.REDIS_ROUND_TRIP.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(decisions))
        with stage_timer.RECORD:
            states: dict[_Decision, ScanState] = {}
            for (_, group), reply in zip(groups, replies[: len(calls)], strict=True):
                states.update(_recorded(group, reply))
            recorded = [d in states for d in contenders]
        won = await self._rewards.draw(plan, candidates, replies[len(calls) :], recorded)
        with stage_timer.RECORD:
            prizes = {contenders[index]: prize for index, prize in won.items()}
            for decision, state in states.items():
                _answer(decision, state, prizes.get(decision))
        stage_timer.publish()  # the handlers' times pending too: once per batch is cheap

    async def _judge(self, decisions: list[_Decision], now_ms: int) -> list[_Decision]:
        """The fraud stage's verdicts; the scans it refuses are answered here and left out."""
        with stage_timer.FRAUD:
            facts = [_scan_facts(d, now_ms) for d in decisions]
        results = await self._fraud.judge(facts, now_ms)
        with stage_timer.FRAUD:
            judged = []
            for decision, fact, result in zip(decisions, facts, results, strict=True):
                if isinstance(result, ApiError):
                    metrics.SCANS_BLOCKED.inc()
                    decision.future.set_exception(result)
                else:
                    decision.verdict, decision.flags = result.verdict, result.flags
                    decision.assessment, decision.facts = result, fact
                    judged.append(decision)
            return judged


def _scan_facts(decision: _Decision, now_ms: int) -> ScanFacts:
    request, verified = decision.request, decision.verified
    return ScanFacts(
        NO_SERIAL if verified is None else verified.serial,
        decision.flags,
        math.nan if request.lat is None else request.lat,
        math.nan if request.lon is None else request.lon,
        math.nan if request.accuracy_m is None else request.accuracy_m,
        now_ms,
        request.device_id,
        device_digest(request.device_id),
        member_digest(request.member_id),
        request.ip,
    )


def _alone(decisions: list[_Decision], step: Callable[[_Decision], T]) -> dict[_Decision, T]:
    """``step`` of each decision, in order; a decision whose step raised is answered 500 alone
    (a bug, logged) instead of failing the scans batched with it."""
    results: dict[_Decision, T] = {}
    for decision in decisions:
        try:
            results[decision] = step(decision)
        except Exception:
            log.exception("scan %r failed", decision.request.code[:64])
            decision.future.set_exception(ApiError("internal error"))
    return results


def _verify(decision: _Decision, verifier: Verifier) -> bool:
    """Fills verdict, flags and product; False when the answer may be due to a stale index."""
    try:
        verified = verifier.verify(decision.request.code)
    except CodeError as error:
        decision.verdict = Verdict.COUNTERFEIT
        decision.flags = ({"flag": error.reason, "message": str(error)},)
        decision.product, decision.verified = None, None
        return error.reason not in ("unknown_serial", "unknown_key")
    batch = verified.batch
    decision.verdict, decision.flags = Verdict.GENUINE, ()
    if batch.status is BatchStatus.REVOKED:
        decision.verdict = Verdict.REVOKED
        decision.flags = ({"flag": "revoked", "message": "the code's batch was revoked"},)
    decision.verified, decision.canonical = verified, verified.canonical
    decision.product = {
        "code": decision.canonical,
        "sku": batch.sku,
        "gtin": batch.gtin,
        "batch_id": batch.batch_id,
        "kind": batch.kind.value,
    }
    return True


def _prepare(decision: _Decision, now_ms: int) -> None:
    request, verified, assessment = decision.request, decision.verified, decision.assessment
    facts = decision.facts
    assert assessment is not None
    assert facts is not None
    decision.scan_id = request.scan_id or next(_SCAN_IDS)
    latency_us = (time.monotonic_ns() - request.received_ns) // 1000
    if verified is not None:
        batch = verified.batch
        serial: int | None = verified.serial
        decision.partition = partition_of_serial(verified.serial)
        code, batch_id, sku, gtin, key_id = (
            decision.canonical,
            batch.batch_id,
            batch.sku,
            batch.gtin,
            batch.key_id,
        )
    else:
        serial = None
        decision.partition = partition_of_text(request.code)
        code, batch_id, sku, gtin, key_id = request.code, "", "", "", 0
    event = ScanEvent(
        time_ms=now_ms,
        serial=serial or 0,
        key_id=key_id,
        verdict=decision.verdict,
        lat=math.nan if request.lat is None else request.lat,
        lon=math.nan if request.lon is None else request.lon,
        accuracy_m=math.nan if request.accuracy_m is None else request.accuracy_m,
        client_time_ms=request.client_time_ms,
        latency_us=latency_us,
        scan_id=decision.scan_id,
        code=code,
        batch_id=batch_id,
        sku=sku,
        gtin=gtin,
        member_id=request.member_id,
        device_id=request.device_id,
        ip=request.ip,
        flags=tuple(str(f["flag"]) for f in decision.flags),
        flag_details=orjson.dumps(decision.flags).decode(),
        risk=assessment.risk,
        distributor_id=assessment.distributor_id,
        surfaced_in=assessment.surfaced_in,
        distance_km=assessment.distance_km,
    )
    packed = pack_scan(serial, now_ms, request.lat, request.lon, facts.device, facts.member)
    decision.retry_key = retry_key(request.scan_id, code, request.device_id, request.member_id)
    decision.argument = scan_argument(packed, decision.retry_key, event.encode())


def _may_win(decision: _Decision) -> bool:
    """Prizes go to genuine scans of members (risk is the draw's business)."""
    return (
        decision.verdict is Verdict.GENUINE
        and decision.verified is not None
        and bool(decision.request.member_id)
    )


def _entrant(decision: _Decision) -> Entrant:
    verified, assessment = decision.verified, decision.assessment
    assert verified is not None
    assert assessment is not None
    return Entrant(
        decision.scan_id,
        decision.retry_key,
        decision.request.member_id,
        assessment.risk,
        verified.serial,
        decision.canonical,
        verified.batch.sku,
        verified.batch.batch_id,
    )


def _recorded(decisions: list[_Decision], reply: object) -> dict[_Decision, ScanState]:
    """The state of each scan the script recorded; on an error its scans are answered here."""
    if isinstance(reply, ResponseError) and str(reply).startswith(STREAM_FULL):
        metrics.SCANS_REFUSED.inc(len(decisions))
        _fail(
            [(d.request, d.future) for d in decisions],
            Unavailable(
                "scans are arriving faster than they can be stored; retry shortly",
                "backlog_full",
                _RETRY_AFTER_S,
            ),
        )
        return {}
    if isinstance(reply, Exception):
        log.error("scan state script failed: %s", reply)
        _fail([(d.request, d.future) for d in decisions], ApiError("internal error"))
        return {}
    assert isinstance(reply, list)
    states = {d: ScanState.from_reply(r) for d, r in zip(decisions, reply, strict=True)}
    counts = Counter(d.verdict for d, state in states.items() if not state.retried)
    for verdict, count in counts.items():
        metrics.SCANS.labels(verdict.label).inc(count)
    return states


def _answer(decision: _Decision, state: ScanState, prize: Won | None) -> None:
    if not decision.future.done():
        decision.future.set_result(
            ScanResult(
                decision.scan_id,
                decision.verdict,
                decision.assessment.risk if decision.assessment else 0,
                decision.flags,
                decision.product,
                state,
                prize,
            )
        )


def _outcome_unknown(error: Exception) -> Unavailable:
    """Redis failed or timed out mid-batch: its scripts may or may not have run."""
    if isinstance(error, RedisTimeoutError):
        return Unavailable(
            "the scan state store did not answer in time; retry with the same scan_id",
            "outcome_unknown",
        )
    return Unavailable("the scan state store is unreachable; retry shortly")


def _fail(batch: Sequence[_Queued], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)

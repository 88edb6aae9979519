"""The decision steps of one scan, each an immutable value made from the one before:
``Pending`` (as submitted) → ``Verified`` (the code checked) → ``Judged`` (the fraud stage's
assessment) → ``Prepared`` (the scan-state script's argument) → a ``ScanResult`` once Redis
recorded it. The I/O between the steps (the fraud stage's reads, the scripts) is the
pipeline's; the steps only compute.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

import orjson

from codes.batches import BatchStatus
from codes.errors import CodeError
from codes.verify import VerifiedCode, Verifier
from fraud.assessment import Assessment, ScanFacts
from fraud.location import NO_SERIAL
from fraud.velocity import address_actor
from fraud.verdicts import Verdict
from ingest.errors import ApiError
from ingest.events.partitions import Partitions
from ingest.events.scans import ScanEvent
from ingest.scan.request import ScanRequest
from ingest.scan.result import ScanResult
from ingest.scan.state import (
    ScanState,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    retry_key,
    scan_argument,
)
from rewards.draws import Entrant, Won
from rewards.member_token import TokenState

log = logging.getLogger(__name__)
Step = TypeVar("Step", bound="Pending | Verified | Judged")
Next = TypeVar("Next")

# server-made scan ids: a random per-process prefix and a counter (os.urandom per scan costs a
# system call; these need to be unique, not secret)
_SCAN_ID_PREFIX = secrets.token_hex(6)
_SCAN_IDS = (f"{_SCAN_ID_PREFIX}{n:x}" for n in itertools.count())
_STALE_INDEX_REASONS = ("unknown_serial", "unknown_key")

Flags = tuple[dict[str, object], ...]


class Pending(NamedTuple):
    request: ScanRequest
    future: asyncio.Future[ScanResult]


class Verified(NamedTuple):
    pending: Pending
    code: VerifiedCode | None  # None: the code did not verify
    verdict: Verdict
    flags: Flags  # what verification found
    maybe_stale: bool  # the answer may be due to a code batch or key newer than the verifier's copy

    @property
    def future(self) -> asyncio.Future[ScanResult]:
        return self.pending.future


class Judged(NamedTuple):
    verified: Verified
    assessment: Assessment  # its verdict and flags are the scan's
    facts: ScanFacts  # what the fraud stage was given, digests included

    @property
    def future(self) -> asyncio.Future[ScanResult]:
        return self.verified.pending.future


class Prepared(NamedTuple):
    judged: Judged
    scan_id: str
    partition: int
    retry_key: str
    argument: bytes  # the scan-state script's argument: packed scan, retry key, event

    @property
    def future(self) -> asyncio.Future[ScanResult]:
        return self.judged.verified.pending.future


def each_alone(values: Iterable[Step], step: Callable[[Step], Next]) -> list[Next]:
    """``step`` of each value, in order; a scan whose step raised is answered 500 alone (a bug,
    logged) instead of failing the scans batched with it."""
    results = []
    for value in values:
        try:
            results.append(step(value))
        except Exception:
            log.exception("scan step %s failed", getattr(step, "__name__", step))
            value.future.set_exception(ApiError("internal error"))
    return results


def verify(pending: Pending, verifier: Verifier) -> Verified:
    try:
        code = verifier.verify(pending.request.code)
    except CodeError as error:
        flags: Flags = ({"flag": error.reason, "message": str(error)},)
        stale = error.reason in _STALE_INDEX_REASONS
        return Verified(pending, None, Verdict.COUNTERFEIT, flags, stale)
    if code.batch.status is BatchStatus.REVOKED:
        flags = ({"flag": "revoked", "message": "the code's batch was revoked"},)
        return Verified(pending, code, Verdict.REVOKED, flags, False)
    return Verified(pending, code, Verdict.GENUINE, (), False)


def facts_of(verified: Verified, now_ms: int) -> ScanFacts:
    """What the fraud stage is told of a scan."""
    request, code = verified.pending.request, verified.code
    return ScanFacts(
        NO_SERIAL if code is None else code.serial,
        verified.flags,
        math.nan if request.lat is None else request.lat,
        math.nan if request.lon is None else request.lon,
        math.nan if request.accuracy_m is None else request.accuracy_m,
        now_ms,
        request.device_id,
        device_digest(request.device_id),
        member_digest(request.member_id),
        address_actor(request.ip),
    )


def prepare(judged: Judged, now_ms: int, partitions: Partitions) -> Prepared:
    """The scan's event and packed record, and the argument carrying them to the script."""
    verified, assessment, facts = judged.verified, judged.assessment, judged.facts
    request, code = verified.pending.request, verified.code
    scan_id = request.scan_id or next(_SCAN_IDS)
    latency_us = (time.monotonic_ns() - request.received_ns) // 1000
    if code is not None:
        batch = code.batch
        serial: int | None = code.serial
        partition = partition_of_serial(code.serial, partitions)
        text, batch_id, sku, gtin, key_id = (
            code.canonical,
            batch.batch_id,
            batch.sku,
            batch.gtin,
            batch.key_id,
        )
    else:
        serial = None
        partition = partitions.of_text(request.code)
        text, batch_id, sku, gtin, key_id = request.code, "", "", "", 0
    event = ScanEvent(
        time_ms=now_ms,
        serial=serial or 0,
        key_id=key_id,
        verdict=assessment.verdict,
        lat=math.nan if request.lat is None else request.lat,
        lon=math.nan if request.lon is None else request.lon,
        accuracy_m=math.nan if request.accuracy_m is None else request.accuracy_m,
        client_time_ms=request.client_time_ms,
        latency_us=latency_us,
        scan_id=scan_id,
        code=text,
        batch_id=batch_id,
        sku=sku,
        gtin=gtin,
        member_id=request.member_id,
        device_id=request.device_id,
        ip=request.ip,
        flags=tuple(str(f["flag"]) for f in assessment.flags),
        flag_details=orjson.dumps(assessment.flags).decode(),
        risk=assessment.risk,
        distributor_id=assessment.distributor_id,
        surfaced_in=assessment.surfaced_in,
        distance_km=assessment.distance_km,
    )
    packed = pack_scan(serial, now_ms, request.lat, request.lon, facts.device, facts.member)
    key = retry_key(request.scan_id, text, request.device_id, request.member_id)
    return Prepared(judged, scan_id, partition, key, scan_argument(packed, key, event.encode()))


def may_win(prepared: Prepared) -> bool:
    """Prizes go to genuine scans (which of them draw is the reward stage's business, their
    risk the draw's)."""
    return (
        prepared.judged.assessment.verdict is Verdict.GENUINE
        and prepared.judged.verified.code is not None
    )


def entrant(prepared: Prepared) -> Entrant:
    verified = prepared.judged.verified
    code = verified.code
    assert code is not None
    return Entrant(
        prepared.scan_id,
        prepared.retry_key,
        verified.pending.request.member_id,
        prepared.judged.assessment.risk,
        code.serial,
        code.canonical,
        code.batch.sku,
        code.batch.batch_id,
        verified.pending.request.member_token,
    )


def result(prepared: Prepared, state: ScanState, prize: Won | TokenState | None) -> ScanResult:
    assessment, code = prepared.judged.assessment, prepared.judged.verified.code
    product: dict[str, object] | None = None
    if code is not None:
        batch = code.batch
        product = {
            "code": code.canonical,
            "sku": batch.sku,
            "gtin": batch.gtin,
            "batch_id": batch.batch_id,
            "kind": batch.kind.value,
        }
    return ScanResult(
        prepared.scan_id,
        assessment.verdict,
        assessment.risk,
        assessment.flags,
        product,
        state,
        prize,
    )

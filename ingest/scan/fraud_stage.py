"""The fraud stage of the scan path: runs the rules of ``fraud`` over a micro-batch.

Territory and shipment rules need no I/O (the reference data is cached in the worker). The
clone, farm and guessing rules need what Redis remembers, fetched in one round trip before the
scan state is decided: the codes' records (an HGET each) and the devices' and addresses'
counters (one ``velocity.lua`` call per actor partition). A device or address blocked for
guessing, or an address past its daily ceiling, is refused with 429; this worker then refuses
it without asking Redis until the block ends (at most ``MAX_KNOWN_BLOCKS``, the oldest forgotten
first). An address blocked for guessing under the ``new_devices`` policy is still asked about
scans with a device (Redis knows which devices it spares), and so is each such device, which is
held to its own guessing limit; but only devices Redis has already are counted, and only
toward guessing: a blocked address cannot make Redis keep more.
``check`` counts a check of a code (``GET /v1/codes``) toward the same guessing limits.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from fraud import location, velocity
from fraud.assessment import Assessment, ScanFacts, assess
from fraud.policy import FraudPolicy
from fraud.scan_record import ScanRecord
from fraud.velocity import (
    GUESS_FLAGS,
    NO_MEMBER,
    NOT_OBSERVED,
    ActorCounts,
    ActorKind,
    Observation,
    Refusal,
)
from ingest import stage_timer
from ingest.errors import TooManyRequests, Unavailable
from ingest.events.partitions import Partitions
from ingest.scan.refusals import refusal
from ingest.scan.state import history_of, read_history
from ingest.store.outage import STORE_FAILURES
from ingest.store.references import ReferenceSource
from ingest.store.scripts import ScriptRunner

REFERENCE_MAX_AGE_S = 0.1
MAX_KNOWN_BLOCKS = 10_000  # ~3 MB; a block forgotten early is only asked of Redis again


Judgement = Assessment | TooManyRequests | Unavailable
"""What the fraud stage says of a scan: its assessment, or why it is refused."""


class _Remembered(NamedTuple):
    histories: list[ScanRecord | None]  # by scan: its code's record, None before a first scan
    devices: list[ActorCounts]
    ips: list[ActorCounts]
    refused: dict[int, Unavailable]  # scan index -> its refusal, where Redis failed its reads


class KnownBlocks:
    """The blocks Redis gave this worker, until they end: at most ``capacity``, the oldest
    forgotten first, so fresh device ids cannot make a worker keep more or work harder."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._until: OrderedDict[tuple[ActorKind, str], tuple[float, Refusal]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def get(self, kind: ActorKind, actor: str, now: float) -> tuple[float, Refusal] | None:
        """When the actor's block ends (``time.monotonic``) and why, if it has not ended."""
        known = self._until.get((kind, actor))
        if known is not None and known[0] <= now:
            del self._until[(kind, actor)]
            return None
        return known

    def add(self, kind: ActorKind, actor: str, until: float, refusal: Refusal) -> None:
        self._until.pop((kind, actor), None)
        self._until[(kind, actor)] = (until, refusal)
        if len(self._until) > self._capacity:
            self._until.popitem(last=False)


class FraudStage:
    def __init__(
        self,
        scripts: ScriptRunner,
        references: ReferenceSource,
        policy: FraudPolicy,
        partitions: Partitions,
    ) -> None:
        self._scripts = scripts
        self._references = references
        self._policy = policy
        self._partitions = partitions
        self._known_blocks = KnownBlocks(MAX_KNOWN_BLOCKS)

    async def judge(self, scans: Sequence[ScanFacts], now_ms: int) -> list[Judgement]:
        """An assessment per scan, or the refusal of a blocked device or IP, or of a scan whose
        history or counters Redis could not give (their primary down)."""
        with stage_timer.FRAUD:
            known_blocks = [self._known_block(scan) for scan in scans]
            fresh = [scan for scan, block in zip(scans, known_blocks, strict=True) if block is None]
        judged_fresh = await self._judge_fresh(fresh, now_ms)
        with stage_timer.FRAUD:
            judged = iter(judged_fresh)
            return [block or next(judged) for block in known_blocks]

    async def _judge_fresh(self, scans: Sequence[ScanFacts], now_ms: int) -> list[Judgement]:
        reference = await self._references.current(REFERENCE_MAX_AGE_S)
        with stage_timer.FRAUD:
            placements = location.place(
                [s.serial for s in scans],
                [s.lat for s in scans],
                [s.lon for s in scans],
                [s.accuracy_m for s in scans],
                reference,
                self._policy,
            )
        histories, devices, ips, refused = await self._remembered(scans, now_ms)
        with stage_timer.FRAUD:
            blocks = [
                refused.get(at)
                or (self._block(scan, device, ip) if device.blocked_s or ip.blocked_s else None)
                for at, (scan, device, ip) in enumerate(zip(scans, devices, ips, strict=True))
            ]
            kept = [at for at, block in enumerate(blocks) if block is None]
            assessed = iter(
                assess(
                    [scans[at] for at in kept],
                    [placements[at] for at in kept],
                    [histories[at] for at in kept],
                    [devices[at] for at in kept],
                    [ips[at] for at in kept],
                    self._policy,
                )
            )
            return [block or next(assessed) for block in blocks]

    async def _remembered(
        self, facts: Sequence[ScanFacts], now_ms: int
    ) -> tuple[
        list[ScanRecord | None], list[ActorCounts], list[ActorCounts], dict[int, Unavailable]
    ]:
        """The codes' histories and the devices' and IPs' counts, in one round trip, and the
        refusal of each scan whose reads Redis failed (others' are answered)."""
        with stage_timer.FRAUD:
            read = [at for at, fact in enumerate(facts) if fact.serial != location.NO_SERIAL]
            by_actor_tag: dict[str, list[tuple[int, Observation]]] = defaultdict(list)
            for at, fact in enumerate(facts):
                address_blocked = bool(self._known_blocks) and self._spared_block(fact.ip)
                for observation in observations_of(fact, address_blocked):
                    tag = self._partitions.actor_tag(observation.actor)
                    by_actor_tag[tag].append((at, observation))
            history_reads = [read_history(facts[at].serial, self._partitions) for at in read]
            velocity_calls = [
                velocity.count(tag, [o for _, o in observed], now_ms // 1000, self._policy)
                for tag, observed in by_actor_tag.items()
            ]
        replies = await self._scripts.run_many([*history_reads, *velocity_calls])
        with stage_timer.FRAUD:
            refused: dict[int, Unavailable] = {}
            for reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, STORE_FAILURES):
                    raise reply
            histories: list[ScanRecord | None] = [None] * len(facts)
            for at, record in zip(read, replies[: len(read)], strict=True):
                if isinstance(record, STORE_FAILURES):
                    refused[at] = refusal(record)
                else:
                    histories[at] = history_of(record)
            devices, ips = [NOT_OBSERVED] * len(facts), [NOT_OBSERVED] * len(facts)
            counted = replies[len(history_reads) :]
            for observed, counts in zip(by_actor_tag.values(), counted, strict=True):
                if isinstance(counts, STORE_FAILURES):
                    refused.update((at, refusal(counts)) for at, _ in observed)
                    continue
                for (at, observation), reply in zip(observed, counts, strict=True):
                    target = devices if observation.kind is ActorKind.DEVICE else ips
                    target[at] = ActorCounts.from_reply(reply)
            return _Remembered(histories, devices, ips, refused)

    async def check(self, address: str, invalid: bool, now_s: int) -> TooManyRequests | None:
        """Counts a check of a code from ``address`` toward its guessing limit; the refusal of
        an address blocked for guessing, whether the code is valid or not (else a block would
        only tell the guesser which codes are invalid). Redis failing does not stop a check."""
        now = time.monotonic()
        known = self._known_blocks.get(ActorKind.IP, address, now)
        if known is not None and known[1] == Refusal.GUESSING:
            return _refusal(ActorKind.IP, known[1], math.ceil(known[0] - now))
        observation = Observation(ActorKind.IP, address, invalid, 0, NO_MEMBER, check=True)
        tag = self._partitions.actor_tag(address)
        [reply] = await self._scripts.run_many(
            [velocity.count(tag, [observation], now_s, self._policy)]
        )
        if isinstance(reply, STORE_FAILURES):
            return None
        if isinstance(reply, Exception):
            raise reply
        counts = ActorCounts.from_reply(reply[0])
        if counts.blocked_s:
            return self._remember(ActorKind.IP, address, counts)
        return None

    def _known_block(self, scan: ScanFacts) -> TooManyRequests | None:
        now = time.monotonic()
        for kind, actor in ((ActorKind.DEVICE, scan.device_id), (ActorKind.IP, scan.ip)):
            known = self._known_blocks.get(kind, actor, now)
            if known is None:
                continue
            until, refusal = known
            if not (kind is ActorKind.IP and scan.device_id and self._spares(refusal)):
                return _refusal(kind, refusal, math.ceil(until - now))
        return None

    def _spared_block(self, address: str) -> bool:
        """Whether the address is known to be blocked for guessing with some devices spared."""
        known = self._known_blocks.get(ActorKind.IP, address, time.monotonic())
        return known is not None and self._spares(known[1])

    def _spares(self, refusal: int) -> bool:
        return refusal == Refusal.GUESSING and self._policy.guess_ip_block == "new_devices"

    def _block(self, scan: ScanFacts, device: ActorCounts, ip: ActorCounts) -> TooManyRequests:
        if device.blocked_s >= ip.blocked_s:
            return self._remember(ActorKind.DEVICE, scan.device_id, device)
        return self._remember(ActorKind.IP, scan.ip, ip)

    def _remember(self, kind: ActorKind, actor: str, counts: ActorCounts) -> TooManyRequests:
        """The refusal Redis gave, remembered by this worker until it ends."""
        self._known_blocks.add(kind, actor, time.monotonic() + counts.blocked_s, counts.refusal)
        return _refusal(kind, counts.refusal, counts.blocked_s)


def _refusal(kind: ActorKind, refusal: int, seconds: int) -> TooManyRequests:
    if refusal == Refusal.CEILING:
        return TooManyRequests(
            f"this address sent too many scans today; try again in {seconds} s",
            "too_many_scans",
            seconds,
        )
    who = "device" if kind is ActorKind.DEVICE else "address"
    return TooManyRequests(
        f"this {who} sent too many invalid codes; try again in {seconds} s",
        "too_many_invalid_codes",
        seconds,
    )


def observations_of(scan: ScanFacts, address_blocked: bool = False) -> list[Observation]:
    """The scan as its address made it and, when it sent one, as its device made it (behind an
    address known to be blocked for guessing: see ``Observation.address_blocked``)."""
    invalid = any(flag["flag"] in GUESS_FLAGS for flag in scan.code_flags)
    serial = 0 if scan.serial == location.NO_SERIAL else scan.serial
    observations = [Observation(ActorKind.IP, scan.ip, invalid, serial, scan.member, scan.device)]
    if scan.device_id:
        observations.append(
            Observation(
                ActorKind.DEVICE,
                scan.device_id,
                invalid,
                serial,
                scan.member,
                address_blocked=address_blocked,
            )
        )
    return observations

"""A micro-batch's verdicts: every rule's flags for each scan, judged through the verdict table.

The pipeline calls ``place`` (fraud.location) before its Redis round trips, fetches the code
histories and actor counts, then ``assess``. Scans of one code in one micro-batch are judged in
order, each seeing the ones before it, as if they had come one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from fraud.clones import clone_flag, overscan_flag
from fraud.location import NO_SERIAL, Placement
from fraud.policy import FraudPolicy
from fraud.scan_record import ScanRecord, record_scan
from fraud.velocity import ActorCounts, velocity_flags
from fraud.verdicts import Verdict, judge


class ScanFacts(NamedTuple):
    """What the rules need of a scan."""

    serial: int  # NO_SERIAL when the code did not verify
    code_flags: tuple[dict[str, object], ...]  # what verification found: counterfeit, revoked
    lat: float  # NaN without a location
    lon: float
    accuracy_m: float  # NaN when not reported
    now_ms: int
    device_id: str  # "" when not sent
    device: bytes  # its digest as scan records keep it, fraud.scan_record.NO_DEVICE when none
    member: bytes  # digest of the member id, fraud.velocity.NO_MEMBER when none
    ip: str  # the client address as counted: fraud.velocity.address_actor


class Assessment(NamedTuple):
    verdict: Verdict
    risk: int
    flags: tuple[dict[str, object], ...]
    distributor_id: str
    surfaced_in: str
    distance_km: float


def assess(
    scans: Sequence[ScanFacts],
    placements: Sequence[Placement],
    histories: Sequence[ScanRecord | None],
    device_counts: Sequence[ActorCounts],
    ip_counts: Sequence[ActorCounts],
    policy: FraudPolicy,
) -> list[Assessment]:
    # a code's record before its last scan in the micro-batch, and that scan: brought up to
    # date only when another scan of the code follows, which few do
    seen_in_micro_batch: dict[int, tuple[ScanRecord | None, ScanFacts]] = {}
    assessments = []
    for scan, placement, stored, device, ip in zip(
        scans, placements, histories, device_counts, ip_counts, strict=True
    ):
        flags = [*scan.code_flags, *placement.flags]
        if scan.serial != NO_SERIAL:
            earlier = seen_in_micro_batch.get(scan.serial)
            history = stored if earlier is None else _recorded(*earlier)
            clone = clone_flag(
                history, scan.now_ms, scan.lat, scan.lon, scan.accuracy_m, scan.device, policy
            )
            if clone is not None:
                flags.append(clone)
            overscanned = overscan_flag(history, policy)
            if overscanned is not None:
                flags.append(overscanned)
            seen_in_micro_batch[scan.serial] = (history, scan)
        flags.extend(velocity_flags(device, ip, policy))
        verdict, risk = judge((str(f["flag"]) for f in flags), policy.verdicts)
        assessments.append(
            Assessment(
                verdict,
                risk,
                tuple(flags),
                placement.distributor_id,
                placement.surfaced_in,
                placement.distance_km,
            )
        )
    return assessments


def _recorded(record: ScanRecord | None, scan: ScanFacts) -> ScanRecord:
    """The record once the scan is counted, by the rule scan_state.lua applies in Redis."""
    return record_scan(record, scan.now_ms, scan.lat, scan.lon, scan.device, scan.member)

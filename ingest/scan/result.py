"""A scan's answer: the verdict, the code's scan state after this scan, and any prize."""

from __future__ import annotations

from typing import NamedTuple

from fraud.verdicts import Verdict
from ingest.scan.state import ScanState
from rewards.draws import Won


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

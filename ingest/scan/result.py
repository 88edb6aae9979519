"""A scan's answer: the verdict, the code's scan state after this scan, and any prize (or why
a campaign did not draw for it)."""

from __future__ import annotations

from typing import NamedTuple

from fraud.verdicts import Verdict
from ingest.scan.state import ScanState
from rewards.draws import Won
from rewards.member_token import TokenState


class ScanResult(NamedTuple):
    scan_id: str
    verdict: Verdict
    risk: int
    flags: tuple[dict[str, object], ...]
    product: dict[str, object] | None
    state: ScanState
    reward: Won | TokenState | None = None
    """The prize won; or, when none was, the member token's state that kept a campaign covering
    the code from drawing for the scan."""

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
            "prize": self.reward.to_json() if isinstance(self.reward, Won) else None,
            "not_drawn": self.reward.value if isinstance(self.reward, TokenState) else None,
        }

"""Recomputing a day's draws from the draw log and the day's revealed seed (no I/O).

The log is replayed in draw order (``seq``), with the awards of other days folded in where
their numbers fall (a batch stamped just before midnight can be drawn after the next day's
first draws; budgets are shared across days). For each
draw the audit recomputes its value from the seed and the scan id, which prizes were available
to it (tier, risk, the member's wins that day, the day's release of each cap, each budget),
whether a guarantee was owed, and the prize the rule gives; any difference from the row is a
mismatch. The replay goes on from what the rule gives, not from what the row says, so a
tampered row is reported alone instead of throwing every later draw off.

What it cannot check: the tier and risk level the server recorded (they come from the member
registry and the fraud rules), and draws missing from the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from rewards.calendar import CampaignDay
from rewards.campaigns import Campaign, Prize
from rewards.odds import NO_PRIZE, choose, draw_value, eligible, slices


@dataclass(frozen=True, slots=True)
class DrawRow:
    seq: int
    time_ms: int
    scan_id: str
    code: str
    member_id: str
    tier: int
    risk: int
    draw_value: int
    prize_id: str
    """'' for a draw that won nothing."""
    guaranteed: bool
    available: int
    """Bit i: the version's i-th prize could be won."""
    version: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    seq: int
    scan_id: str
    field: str
    recorded: object
    expected: object

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "scan_id": self.scan_id,
            "field": self.field,
            "recorded": self.recorded,
            "expected": self.expected,
        }


def audit(
    rows: Iterable[DrawRow],
    versions: Mapping[int, Campaign],
    day: date,
    seed: bytes,
    other_days: Iterable[tuple[int, str]],
) -> list[Mismatch]:
    """``other_days``: (seq, prize id) of the awards of other days drawn before this day's
    last draw."""
    awarded: Counter[str] = Counter()
    others = sorted(other_days)
    folded = 0
    today: Counter[str] = Counter()
    wins: Counter[str] = Counter()
    seen: set[int] = set()
    found: list[Mismatch] = []
    for row in sorted(rows, key=lambda r: r.seq):

        def mismatch(field: str, recorded: object, expected: object, row: DrawRow = row) -> None:
            found.append(Mismatch(row.seq, row.scan_id, field, recorded, expected))

        while folded < len(others) and others[folded][0] < row.seq:
            awarded[others[folded][1]] += 1
            folded += 1
        if row.seq in seen:
            mismatch("seq", row.seq, "a draw number used once")
            continue
        seen.add(row.seq)
        campaign = versions.get(row.version)
        if campaign is None:
            mismatch("version", row.version, sorted(versions))
            continue
        value = draw_value(seed, row.scan_id, row.code)
        if value != row.draw_value:
            mismatch("draw_value", row.draw_value, value)
        clock = CampaignDay.at(row.time_ms, campaign.zone)
        if clock.day != day:
            mismatch("day", clock.day.isoformat(), day.isoformat())
        prizes = campaign.prizes
        available = [
            eligible(p, row.tier, row.risk)
            and wins[row.member_id] < campaign.member_daily_win_limit
            and today[p.prize_id] < clock.released(p.daily_cap)
            and awarded[p.prize_id] < p.total_budget
            for p in prizes
        ]
        mask = sum(1 << i for i, a in enumerate(available) if a)
        if mask != row.available:
            mismatch("available", _ids(prizes, row.available), _ids(prizes, mask))
        due = campaign.guarantee_due(clock, row.time_ms)
        owed = [due and today[p.prize_id] < p.guaranteed_daily for p in prizes]
        choice = choose(value, slices(prizes, row.tier), available, owed)
        prize_id = prizes[choice.prize].prize_id if choice.prize != NO_PRIZE else ""
        if (prize_id, choice.guaranteed) != (row.prize_id, row.guaranteed):
            mismatch("prize", [row.prize_id, row.guaranteed], [prize_id, choice.guaranteed])
        if prize_id:
            awarded[prize_id] += 1
            today[prize_id] += 1
            wins[row.member_id] += 1
    return found


def _ids(prizes: Sequence[Prize], mask: int) -> list[str]:
    return [p.prize_id for i, p in enumerate(prizes) if mask >> i & 1]

"""A campaign's local day at a moment: which day, which hour of it, and how much of each daily
cap has been released by then."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class CampaignDay:
    day: date
    hour: int
    """Whole hours since local midnight."""
    hours: int
    """Hours in this local day: 24, or 23 and 25 where clocks change."""
    ends_ms: int
    """The next local midnight."""

    @classmethod
    def at(cls, now_ms: int, zone: ZoneInfo) -> CampaignDay:
        local = datetime.fromtimestamp(now_ms / 1000, zone)
        midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
        following = midnight.date() + timedelta(days=1)
        next_midnight = datetime(following.year, following.month, following.day, tzinfo=zone)
        starts_ms = round(midnight.timestamp() * 1000)
        ends_ms = round(next_midnight.timestamp() * 1000)
        return cls(
            local.date(),
            (now_ms - starts_ms) // 3_600_000,
            (ends_ms - starts_ms) // 3_600_000,
            ends_ms,
        )

    def released(self, daily_cap: int) -> int:
        """Pacing: the cap is released hour by hour, ``cap x (hour + 1) / hours`` by the end of
        the current hour (rounded up); what an hour did not give out carries over."""
        return min(daily_cap, -(-daily_cap * (self.hour + 1) // self.hours))

    def guarantee_due(self, now_ms: int, window_minutes: int, closes_ms: int) -> bool:
        """Within the last ``window_minutes`` of the day, or of a campaign that closes at
        ``closes_ms`` before the day ends: when a guaranteed-daily prize still short goes to the
        next eligible scan."""
        return min(self.ends_ms, closes_ms) - now_ms <= window_minutes * 60_000

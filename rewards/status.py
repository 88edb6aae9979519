"""What the campaign endpoints show: live budgets and the fairness commitments (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from rewards.calendar import CampaignDay
from rewards.draws import LiveCampaign
from rewards.store import campaign_key

Command = tuple[str, ...]


def budget_reads(live: LiveCampaign, now_ms: int) -> list[Command]:
    """Prizes given out in all and today (local day): two HGETALLs for ``budgets``."""
    cid = live.campaign.campaign_id
    today = CampaignDay.at(now_ms, live.campaign.zone).day.isoformat()
    return [
        ("HGETALL", campaign_key(cid, "awarded")),
        ("HGETALL", campaign_key(cid, f"day:{today}")),
    ]


def budgets(
    live: LiveCampaign, now_ms: int, awarded: Mapping[str, str], today: Mapping[str, str]
) -> list[dict[str, object]]:
    day = CampaignDay.at(now_ms, live.campaign.zone)
    rows: list[dict[str, object]] = []
    for prize in live.campaign.prizes:
        given, given_today = int(awarded.get(prize.prize_id, 0)), int(today.get(prize.prize_id, 0))
        rows.append(
            {
                "prize_id": prize.prize_id,
                "awarded": given,
                "remaining_budget": max(0, prize.total_budget - given),
                "awarded_today": given_today,
                "remaining_today": max(0, prize.daily_cap - given_today),
                "released_today": day.released(prize.daily_cap),
            }
        )
    return rows


REVEAL_DELAY_MS = 10 * 60_000
"""A seed is revealed this long after its day ends: a batch stamped just before midnight, or on
a worker whose clock runs a little slow, may still be drawing with it."""


def fairness(live: LiveCampaign, now_ms: int) -> dict[str, object]:
    """Every day's seed hash, committed when the campaign was saved, and the seed itself ten
    minutes after the day is over. ``draw_value = HMAC-SHA256(seed, scan_id + ":" + code)``,
    first 53 bits."""
    zone = live.campaign.zone
    days = []
    revealed_up_to = CampaignDay.at(now_ms - REVEAL_DELAY_MS, zone).day
    for day, seed in sorted(live.seeds.items()):
        over = revealed_up_to > day
        days.append(
            {
                "day": day.isoformat(),
                "seed_sha256": hashlib.sha256(seed).hexdigest(),
                "seed": seed.hex() if over else None,
            }
        )
    return {
        "campaign_id": live.campaign.campaign_id,
        "timezone": live.campaign.timezone,
        "draw_value": "first 53 bits of HMAC-SHA256(key=seed, message=scan_id + ':' + code), "
        "big-endian",
        "days": days,
    }

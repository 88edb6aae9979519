"""Draw entries written straight into the campaigns' streams, as the draw script writes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import redis

from rewards import draw_log
from rewards.draw_log import REQUEST_STRINGS, day_number
from rewards.store import draw_stream as stream_key
from rewards.store import unsunk_key
from tests.sink_support import DAY_MS, START_MS

PRIZES = [
    {"id": "cash-5", "kind": "cash", "value": 500},
    {"id": "points-100", "kind": "points", "value": 100},
    {"id": "cap", "kind": "item", "value": 1},
]
OUTCOME = draw_log.OUTCOME_STRUCT
LOCAL_OFFSET_MS = 9 * 3_600_000  # the campaigns' zone: their day starts at 15:00 UTC


@dataclass(frozen=True, slots=True)
class Draw:
    campaign: str
    seq: int
    prize: int
    """Index in ``PRIZES``, -1 for none."""
    guaranteed: int
    available: int
    points_balance: int
    request: dict[str, Any]


def make_draws(campaign: str, count: int, first_seq: int = 1) -> list[Draw]:
    """Draws ``first_seq..`` of ``campaign``, an hour apart (over two days and two months), each
    kind of outcome in turn: none, cash (some guaranteed), points, the item."""
    draws = []
    for seq in range(first_seq, first_seq + count):
        prize = seq % 4 - 1
        time_ms = START_MS + seq * 3_600_000 % (2 * DAY_MS)
        local_day = datetime.fromtimestamp((time_ms + LOCAL_OFFSET_MS) / 1000, UTC).date()
        request = {
            "scan_id": f"{campaign}-scan-{seq}",
            "member_id": f"m{seq % 5}",
            "code": f"CODE{seq:016d}",
            "serial": 1_000_000 + seq,
            "sku": "BIÈRE-500" if seq % 2 else "COLA-330",
            "batch_id": f"B{seq % 3}",
            "time_ms": time_ms,
            "day": local_day.isoformat(),
            "tier": seq % 5,
            "risk": seq % 3,
            "draw_value": 2**64 - seq,  # the full UInt64 range
            "version": 3,
        }
        draws.append(
            Draw(
                campaign=campaign,
                seq=seq,
                prize=prize,
                guaranteed=int(prize == 0 and seq % 8 == 1),
                available=seq * 5 % 8 | (1 << prize if prize >= 0 else 0),
                points_balance=100 * seq if prize == 1 else 0,
                request=request,
            )
        )
    return draws


def encode_request(request: dict[str, Any]) -> bytes:
    """A request of the draw log, framed, from the fields of ``make_draws``."""
    numbers = (
        request["time_ms"],
        request["serial"],
        request["draw_value"],
        request["version"],
        day_number(date.fromisoformat(request["day"])),
        request["tier"],
        request["risk"],
    )
    encoded = draw_log.encode_request(numbers, tuple(request[s] for s in REQUEST_STRINGS))
    return draw_log.FRAME.pack(len(encoded)) + encoded


def encode_entry(draws: Sequence[Draw]) -> dict[bytes, bytes]:
    """The fields of one draw script call's entry."""
    outcomes = [
        OUTCOME.pack(d.seq, d.prize, d.guaranteed, d.available, d.points_balance) for d in draws
    ]
    return {
        b"r": b"".join(encode_request(draw.request) for draw in draws),
        b"o": b"".join(outcomes),
        b"p": orjson.dumps(PRIZES),
    }


def add_draws(client: redis.Redis, draws: Sequence[Draw], per_entry: int = 3) -> None:
    """Appends the draws as the draw script does, ``per_entry`` draws of a campaign an entry."""
    by_campaign: dict[str, list[Draw]] = {}
    for draw in draws:
        by_campaign.setdefault(draw.campaign, []).append(draw)
    pipe = client.pipeline(transaction=False)
    for campaign, group in by_campaign.items():
        for start in range(0, len(group), per_entry):
            entry = group[start : start + per_entry]
            pipe.xadd(stream_key(campaign), encode_entry(entry))  # type: ignore[arg-type]
            pipe.incrby(unsunk_key(stream_key(campaign)), len(entry))
    pipe.execute()

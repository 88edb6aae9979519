"""``scanward rewards audit``: a campaign day's draws recomputed from ClickHouse ``draws``, the
campaign's saved versions and the day's seed (see ``rewards.audit``)."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import orjson
from redis import Redis
from redis.cluster import RedisCluster

from rewards.audit import DrawRow, audit
from rewards.campaigns import Campaign
from rewards.store import campaign_key

MAX_LISTED = 100

_DRAWS = """
SELECT seq, time_ms, scan_id, code, member_id, tier, risk, draw_value, prize_id, guaranteed,
       available, config_version
FROM draws WHERE campaign_id = %(campaign)s AND day = %(day)s
ORDER BY seq
"""
_OTHER_DAYS = """
SELECT seq, prize_id FROM awards
WHERE campaign_id = %(campaign)s AND day != %(day)s AND seq < %(last_seq)s
"""


class AuditError(Exception):
    """The audit cannot run (unknown campaign, no seed for the day)."""


def audit_day(
    redis: Redis | RedisCluster,
    clickhouse: Any,
    campaign_id: str,
    day: date,
    tiers: int,
    seed: bytes | None = None,
) -> dict[str, object]:
    """The audit report; ``seed`` is the revealed seed an outside auditor holds (by default
    the one stored in Redis)."""
    stored = redis.hgetall(campaign_key(campaign_id, "configs"))
    if not stored:
        raise AuditError(f"no campaign {campaign_id!r}")
    versions = {
        int(version): Campaign.from_json(campaign_id, orjson.loads(config), tiers)
        for version, config in stored.items()
    }
    if seed is None:
        hex_seed = redis.hget(campaign_key(campaign_id, "seeds"), day.isoformat())
        if hex_seed is None:
            raise AuditError(f"campaign {campaign_id!r} has no seed for {day}")
        seed = bytes.fromhex(hex_seed.decode() if isinstance(hex_seed, bytes) else hex_seed)
    parameters = {"campaign": campaign_id, "day": day}
    rows = [_draw_row(row) for row in clickhouse.execute(_DRAWS, parameters)]
    last_seq = max((row.seq for row in rows), default=0)
    others = clickhouse.execute(_OTHER_DAYS, {**parameters, "last_seq": last_seq})
    mismatches = audit(rows, versions, day, seed, others)
    return {
        "campaign_id": campaign_id,
        "day": day.isoformat(),
        "seed_sha256": hashlib.sha256(seed).hexdigest(),
        "draws": len(rows),
        "awards": sum(1 for row in rows if row.prize_id),
        "mismatch_count": len(mismatches),
        "mismatches": [m.to_json() for m in mismatches[:MAX_LISTED]],
        "ok": not mismatches,
    }


def _draw_row(columns: tuple[Any, ...]) -> DrawRow:
    """A row of ``_DRAWS``, whose columns are in ``DrawRow``'s order."""
    seq, time_ms, scan_id, code, member_id, tier, risk, value, prize_id = columns[:9]
    guaranteed, available, version = columns[9:]
    return DrawRow(
        seq,
        time_ms,
        scan_id,
        code,
        member_id,
        tier,
        risk,
        value,
        prize_id,
        bool(guaranteed),
        available,
        version,
    )

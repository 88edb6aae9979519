"""A micro-batch's draws in one campaign as a ``draw.lua`` call, and the outcomes it answers."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum

import orjson

from codes.commands import LuaScript, ScriptCall
from rewards.calendar import CampaignDay
from rewards.campaigns import Campaign, Prize, PrizeKind
from rewards.odds import NO_PRIZE, draw_value, slices
from rewards.store import draw_stream, unsunk_key

DRAW = LuaScript.load(__package__ or "rewards", "draw.lua")
STALE_CAMPAIGN = "STALE_CAMPAIGN"

_PRIZE = struct.Struct("<IIIBBBq")  # as PRIZE in draw.lua
_SLICE = struct.Struct("<QQ")
_DRAW = struct.Struct("<QQBB")
_SHORT_TEXT = struct.Struct("<H")
_LONG_TEXT = struct.Struct("<I")
OUTCOME = struct.Struct("<QhBIq")


@dataclass(frozen=True, slots=True)
class Entrant:
    """A scan that takes part in a campaign's draw."""

    scan_id: str
    retry_key: str
    """As the scan state keeps it ('' without a client scan id): a retry gets the same outcome."""
    member_id: str
    risk: int
    serial: int
    code: str
    sku: str
    batch_id: str
    tier: int = 0
    """The member's, looked up by the reward stage."""


class DrawStatus(Enum):
    NEW = "N"
    RETRIED = "R"
    ALREADY_DRAWN = "D"
    """The code drew in this campaign before (a code draws once)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: DrawStatus
    seq: int = 0
    prize: Prize | None = None
    guaranteed: bool = False
    available_mask: int = 0
    points_balance: int = 0


@dataclass(frozen=True, slots=True)
class LiveCampaign:
    """A campaign as saved (its version) with its day seeds: what a worker draws with."""

    campaign: Campaign
    version: int
    seeds: Mapping[date, bytes]

    def call(
        self, entrants: Sequence[Entrant], now_ms: int, tiers: int, retry_ttl_s: int
    ) -> ScriptCall:
        """The draws of ``entrants`` at ``now_ms`` (inside the campaign's period)."""
        campaign = self.campaign
        today = CampaignDay.at(now_ms, campaign.zone)
        seed = self.seeds[today.day]
        owed = today.guarantee_due(now_ms, campaign.guarantee_window_minutes)
        bounds = _slices_by_prize(campaign, tiers)
        table = b"".join(
            _PRIZE.pack(
                prize.total_budget,
                today.released(prize.daily_cap),
                prize.guaranteed_daily if owed else 0,
                prize.min_tier,
                prize.high_value,
                prize.kind is PrizeKind.POINTS,
                prize.value,
            )
            + b"".join(_SLICE.pack(low, high) for low, high in bounds[i])
            for i, prize in enumerate(campaign.prizes)
        )
        day = today.day.isoformat()
        draws = b"".join(self._draw(e, draw_value(seed, e.scan_id), now_ms, day) for e in entrants)
        cid = campaign.campaign_id
        return ScriptCall(
            DRAW,
            (draw_stream(cid), unsunk_key(draw_stream(cid))),
            (
                self.version,
                day,
                now_ms,
                campaign.member_daily_win_limit,
                retry_ttl_s,
                tiers,
                prize_table(campaign.prizes),
                table,
                draws,
            ),
        )

    def _draw(self, entrant: Entrant, value: int, now_ms: int, day: str) -> bytes:
        request = orjson.dumps(
            {
                "scan_id": entrant.scan_id,
                "member_id": entrant.member_id,
                "code": entrant.code,
                "serial": entrant.serial,
                "sku": entrant.sku,
                "batch_id": entrant.batch_id,
                "time_ms": now_ms,
                "day": day,
                "tier": entrant.tier,
                "risk": entrant.risk,
                "draw_value": value,
                "version": self.version,
            }
        )
        return (
            _DRAW.pack(entrant.serial, value, entrant.tier, entrant.risk)
            + _text(_SHORT_TEXT, entrant.member_id.encode())
            + _text(_SHORT_TEXT, entrant.retry_key.encode())
            + _text(_LONG_TEXT, request)
        )

    def outcomes(self, reply: Sequence[bytes]) -> list[Outcome]:
        return [self._outcome(raw) for raw in reply]

    def _outcome(self, raw: bytes) -> Outcome:
        status = DrawStatus(chr(raw[0]))
        if status is DrawStatus.ALREADY_DRAWN:
            return Outcome(status)
        seq, index, guaranteed, mask, balance = OUTCOME.unpack_from(raw, 1)
        prizes = self.campaign.prizes
        prize = prizes[index] if index != NO_PRIZE and index < len(prizes) else None
        return Outcome(status, seq, prize, guaranteed == 1, mask, balance)


def prize_table(prizes: Sequence[Prize]) -> bytes:
    """The prizes by index as the draw log records them (the stream entry's ``p``)."""
    return orjson.dumps([{"id": p.prize_id, "kind": p.kind, "value": p.value} for p in prizes])


def _slices_by_prize(campaign: Campaign, tiers: int) -> list[list[tuple[int, int]]]:
    by_tier = [slices(campaign.prizes, tier) for tier in range(tiers)]
    return [[by_tier[tier][i] for tier in range(tiers)] for i in range(len(campaign.prizes))]


def _text(frame: struct.Struct, data: bytes) -> bytes:
    return frame.pack(len(data)) + data

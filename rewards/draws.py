"""A micro-batch's draws in one campaign as a ``draw.lua`` call, and the outcomes it answers."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import NamedTuple

import orjson

from codes.commands import LuaScript, ScriptCall
from rewards import draw_log
from rewards.calendar import CampaignDay
from rewards.campaigns import Campaign, Prize, PrizeKind
from rewards.errors import StaleCampaign
from rewards.member_token import TokenState
from rewards.odds import DrawValues, slices
from rewards.store import draw_stream, unsunk_key

DRAW = LuaScript.load(__package__ or "rewards", "draw.lua", {"STALE_CAMPAIGN": StaleCampaign})

_PRIZE = struct.Struct("<IIIBBBq")  # as PRIZE in draw.lua
_SLICE = struct.Struct("<QQ")
_DRAW = struct.Struct("<QQBB")
_SHORT_TEXT = struct.Struct("<H")
_KINDS = (PrizeKind.CASH, PrizeKind.POINTS, PrizeKind.ITEM)  # as KINDS in draw.lua
_KIND_CODES = {kind: code for code, kind in enumerate(_KINDS)}
_WON = struct.Struct("<Bq")  # as WON in draw.lua
_WON_AT = 1 + draw_log.OUTCOME_STRUCT.size


@dataclass(frozen=True, slots=True)
class Entrant:
    """A genuine scan that may take part in a campaign's draw."""

    scan_id: str
    retry_key: str
    """As the scan state keeps it ('' without a client scan id): a retry gets the same outcome."""
    member_id: str
    risk: int
    serial: int
    code: str
    sku: str
    batch_id: str
    member_token: TokenState = TokenState.MISSING
    """Whether a campaign that requires a member token may draw for it."""


class DrawStatus(Enum):
    NEW = "N"
    RETRIED = "R"
    ALREADY_DRAWN = "D"
    """The code drew in this campaign before (a code draws once)."""


_STATUSES = {ord(status.value): status for status in DrawStatus}


class Won(NamedTuple):
    """A prize won in a campaign, as the consumer is told of it."""

    campaign_id: str
    prize_id: str
    kind: PrizeKind
    value: int

    def to_json(self) -> dict[str, object]:
        return {
            "prize_id": self.prize_id,
            "kind": self.kind.value,
            "value": self.value,
            "campaign_id": self.campaign_id,
        }


@dataclass(frozen=True, slots=True)
class DrawOutcome:
    status: DrawStatus
    seq: int = 0
    prize: Won | None = None
    """As it was when drawn (a retry after the campaign changed gets the same)."""
    guaranteed: bool = False
    available_mask: int = 0
    points_balance: int = 0


class LiveCampaign:
    """A campaign as saved (its version) with its day seeds: what a worker draws with, for a
    programme of ``tiers`` member tiers. What a call needs of the campaign alone is worked out
    once, and per hour of the day what depends on the clock."""

    def __init__(
        self, campaign: Campaign, version: int, seeds: Mapping[date, bytes], tiers: int
    ) -> None:
        self.campaign = campaign
        self.version = version
        self.seeds = seeds
        self._draw_values = {day: DrawValues(seed) for day, seed in seeds.items()}
        by_tier = [slices(campaign.prizes, tier) for tier in range(tiers)]
        self._tiers = tiers
        self._prize_tails = [
            _text(_SHORT_TEXT, prize.prize_id.encode())
            + b"".join(_SLICE.pack(*by_tier[tier][i]) for tier in range(tiers))
            for i, prize in enumerate(campaign.prizes)
        ]
        self._prize_json = prize_table(campaign.prizes)
        self._tables: dict[tuple[date, int, bool], bytes] = {}
        self._open_asked = (-1, False)  # (now_ms, open then)
        cid = campaign.campaign_id
        self._keys = (draw_stream(cid), unsunk_key(draw_stream(cid)))

    def open_at(self, now_ms: int) -> bool:
        """In its period, with a seed for the local day."""
        # asked for every entrant of a micro-batch, all at the batch's time: the local day
        # (~4 us of zoneinfo) is worked out once
        if now_ms != self._open_asked[0]:
            is_open = self.campaign.active(now_ms) and (
                CampaignDay.at(now_ms, self.campaign.zone).day in self._draw_values
            )
            self._open_asked = (now_ms, is_open)
        return self._open_asked[1]

    def call(
        self, entrants: Sequence[Entrant], tiers: Sequence[int], now_ms: int, retry_ttl_s: int
    ) -> ScriptCall:
        """The draws of ``entrants``, members of ``tiers``, at ``now_ms`` (in the campaign's
        period); refused with ``StaleCampaign`` when the campaign was saved since this version."""
        campaign = self.campaign
        today = CampaignDay.at(now_ms, campaign.zone)
        owed = campaign.guarantee_due(today, now_ms)
        values = self._draw_values[today.day]
        header = (now_ms, self.version, draw_log.day_number(today.day))
        top = self._tiers - 1  # a tier stored before the programme had fewer counts as its top
        draws = b"".join(
            self._draw(entrant, min(tier, top), values(entrant.scan_id, entrant.code), header)
            for entrant, tier in zip(entrants, tiers, strict=True)
        )
        return ScriptCall(
            DRAW,
            self._keys,
            (
                self.version,
                today.day.isoformat(),
                now_ms,
                campaign.member_daily_win_limit,
                retry_ttl_s,
                self._tiers,
                self._prize_json,
                self._table(today, owed),
                draws,
            ),
        )

    def _table(self, today: CampaignDay, owed: bool) -> bytes:
        """The prizes as the script reads them: what changes by the hour, then the rest."""
        key = (today.day, today.hour, owed)
        table = self._tables.get(key)
        if table is None:
            self._tables = {}  # only the current hour is worth keeping
            table = self._tables[key] = b"".join(
                _PRIZE.pack(
                    prize.total_budget,
                    today.released(prize.daily_cap),
                    prize.guaranteed_daily if owed else 0,
                    prize.min_tier,
                    prize.high_value,
                    _KIND_CODES[prize.kind],
                    prize.value,
                )
                + tail
                for prize, tail in zip(self.campaign.prizes, self._prize_tails, strict=True)
            )
        return table

    @staticmethod
    def _draw(entrant: Entrant, tier: int, value: int, header: tuple[int, int, int]) -> bytes:
        now_ms, version, day = header
        request = draw_log.encode_request(
            (now_ms, entrant.serial, value, version, day, tier, entrant.risk),
            (entrant.scan_id, entrant.member_id, entrant.code),
        )
        return (
            _DRAW.pack(entrant.serial, value, tier, entrant.risk)
            + _text(_SHORT_TEXT, entrant.member_id.encode())
            + _text(_SHORT_TEXT, entrant.retry_key.encode())
            + _text(draw_log.FRAME, request)
        )

    def outcomes(self, reply: Sequence[bytes]) -> list[DrawOutcome]:
        return [self._outcome(raw) for raw in reply]

    def _outcome(self, raw: bytes) -> DrawOutcome:
        status = _STATUSES[raw[0]]
        if status is DrawStatus.ALREADY_DRAWN:
            return DrawOutcome(status)
        seq, _, guaranteed, mask, balance = draw_log.OUTCOME_STRUCT.unpack_from(raw, 1)
        prize = None
        if len(raw) > _WON_AT:
            kind, value = _WON.unpack_from(raw, _WON_AT)
            prize_id = raw[_WON_AT + _WON.size :].decode()
            prize = Won(self.campaign.campaign_id, prize_id, _KINDS[kind], value)
        return DrawOutcome(status, seq, prize, guaranteed == 1, mask, balance)


def prize_table(prizes: Sequence[Prize]) -> bytes:
    """The prizes by index as the draw log records them (the stream entry's ``p``)."""
    return orjson.dumps([{"id": p.prize_id, "kind": p.kind, "value": p.value} for p in prizes])


def _text(frame: struct.Struct, data: bytes) -> bytes:
    return frame.pack(len(data)) + data

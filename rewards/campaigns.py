"""Campaigns and their prizes: what an admin may configure, validated once, stored as JSON.

A campaign runs from ``start`` to ``end`` (inclusive) in its own time zone, whose local days
are the days of daily caps, member limits and draw seeds. It covers the codes of its SKUs and
of its batches. Each prize has a kind (``cash`` in cents, ``points``, ``item``), a value, a
total budget and a daily cap, and a probability per member tier: ``base_probability`` times
the tier's weight (1 for a tier the prize does not list), nothing below ``min_tier``.

The probabilities a tier can win with must add up to at most 1: a campaign where some tier's
``base x weight`` sum exceeds 1 is rejected (422 ``probabilities_exceed_one``), not clamped, so
that the published odds are the odds drawn.

A campaign with ``"member_token": "required"`` draws only for scans whose member a signed member
token names (``rewards.member_token``); by default (``"optional"``) a bare member id will do.
"""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rewards.calendar import CampaignDay
from rewards.errors import CampaignError
from rewards.member_token import TokenState

MAX_PRIZES = 32  # a draw records which prizes were available as a 32-bit mask
MAX_DAYS = 366  # a seed per day is committed when the campaign is saved
MAX_LIST = 1_000
MAX_COUNT = 1_000_000_000
ID_PATTERN = "[A-Za-z0-9_-]{1,64}"
"""Campaign and prize ids: they go into Redis keys and hash tags."""
_ID = re.compile(ID_PATTERN)
_TIER_KEY = re.compile("[0-9]{1,3}")
_YEARS = (2000, 2999)  # local days of any zone stay representable


MEMBER_TOKEN_OPTIONS = ("optional", "required")
"""A campaign's ``member_token``: the first is the default."""

_HOST_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _HOST_ZONES


def is_campaign_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


class PrizeKind(StrEnum):
    CASH = "cash"
    POINTS = "points"
    ITEM = "item"


@dataclass(frozen=True, slots=True)
class Prize:
    prize_id: str
    kind: PrizeKind
    value: int
    total_budget: int
    daily_cap: int
    guaranteed_daily: int
    base_probability: float
    tier_weights: tuple[float, ...]
    """The weight of every tier, by tier number."""
    min_tier: int
    high_value: bool
    """Not given to a scan of risk level 3 (items unless said otherwise)."""

    def probability(self, tier: int) -> float:
        return 0.0 if tier < self.min_tier else self.base_probability * self.tier_weights[tier]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.prize_id,
            "kind": self.kind.value,
            "value": self.value,
            "total_budget": self.total_budget,
            "daily_cap": self.daily_cap,
            "guaranteed_daily": self.guaranteed_daily,
            "base_probability": self.base_probability,
            "tier_weights": {str(t): w for t, w in enumerate(self.tier_weights)},
            "min_tier": self.min_tier,
            "high_value": self.high_value,
        }


@dataclass(frozen=True, slots=True)
class Campaign:
    campaign_id: str
    name: str
    start_ms: int
    end_ms: int
    timezone: str
    skus: frozenset[str]
    batches: frozenset[str]
    member_daily_win_limit: int
    guarantee_window_minutes: int
    """A guaranteed-daily prize still short this close to the day's end goes to the next
    eligible scan."""
    prizes: tuple[Prize, ...]
    member_token_required: bool = False
    """Only a scan with a valid signed member token draws."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def covers(self, sku: str, batch_id: str) -> bool:
        return sku in self.skus or batch_id in self.batches

    def keeps_out(self, token: TokenState) -> bool:
        """Whether a scan whose member token is in this state draws nothing here for it: a
        token sent but not valid leaves the scan without a member anywhere."""
        return token is not TokenState.VALID and (
            self.member_token_required or token is not TokenState.MISSING
        )

    def active(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms <= self.end_ms

    def guarantee_due(self, day: CampaignDay, now_ms: int) -> bool:
        return day.guarantee_due(now_ms, self.guarantee_window_minutes, self.end_ms + 1)

    def days(self) -> list[date]:
        """Every local day the campaign is open on."""
        first = _local(self.start_ms, self.zone).date()
        last = _local(self.end_ms, self.zone).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def to_json(self) -> dict[str, Any]:
        """The configuration as ``from_json`` reads it back (the id is the caller's)."""
        zone = self.zone
        return {
            "name": self.name,
            "start": _local(self.start_ms, zone).isoformat(),
            "end": _local(self.end_ms, zone).isoformat(),
            "timezone": self.timezone,
            "skus": sorted(self.skus),
            "batches": sorted(self.batches),
            "member_daily_win_limit": self.member_daily_win_limit,
            "guarantee_window_minutes": self.guarantee_window_minutes,
            "prizes": [prize.to_json() for prize in self.prizes],
            "member_token": "required" if self.member_token_required else "optional",
        }

    @classmethod
    def from_json(cls, campaign_id: str, document: object, tiers: int) -> Campaign:
        """A validated campaign from the JSON an admin sent (or that was stored), for a
        programme with member tiers ``0 .. tiers - 1``; ``CampaignError`` names what is wrong."""
        fields = _Fields(document, "campaign")
        if not is_campaign_id(campaign_id):
            raise CampaignError("a campaign id is 1 to 64 letters, digits, '_' or '-'")
        name = fields.text("name")
        timezone = _checked_zone(fields.text("timezone"))
        start_ms, end_ms = fields.instant("start"), fields.instant("end")
        if end_ms <= start_ms:
            raise CampaignError("end must be after start", "invalid_period")
        if end_ms - start_ms > MAX_DAYS * 86_400_000:
            raise CampaignError(f"a campaign lasts at most {MAX_DAYS} days", "invalid_period")
        skus, batches = fields.text_set("skus"), fields.text_set("batches")
        if not skus and not batches:
            raise CampaignError("a campaign covers at least one of skus or batches")
        raw_prizes = fields.list("prizes")
        if not 1 <= len(raw_prizes) <= MAX_PRIZES:
            raise CampaignError(f"prizes must list 1 to {MAX_PRIZES} prizes")
        campaign = cls(
            campaign_id,
            name,
            start_ms,
            end_ms,
            timezone,
            skus,
            batches,
            fields.count("member_daily_win_limit", default=1, minimum=1),
            fields.count("guarantee_window_minutes", default=60, minimum=1, maximum=24 * 60),
            tuple(_prize(raw, f"prizes[{i}]", tiers) for i, raw in enumerate(raw_prizes)),
            fields.choice("member_token", MEMBER_TOKEN_OPTIONS) == "required",
        )
        fields.done()
        _check_unique([p.prize_id for p in campaign.prizes])
        _check_odds(campaign.prizes, tiers)
        return campaign


def _checked_zone(timezone: str) -> str:
    """An IANA zone name; not 'localtime' or a file path, which differ from host to host."""
    try:
        if timezone not in _known_zones():
            raise ZoneInfoNotFoundError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CampaignError(
            f"timezone {timezone!r} is not an IANA time zone such as 'Asia/Shanghai'",
            "invalid_timezone",
        ) from None
    return timezone


def _prize(document: object, where: str, tiers: int) -> Prize:
    fields = _Fields(document, where)
    prize_id = fields.text("id")
    if not _ID.fullmatch(prize_id):
        raise CampaignError(f"{where}.id is 1 to 64 letters, digits, '_' or '-'")
    try:
        kind = PrizeKind(fields.text("kind"))
    except (CampaignError, ValueError):  # missing, not text or unknown: one message
        raise CampaignError(f"{where}.kind must be one of cash, points, item") from None
    total_budget = fields.count("total_budget")
    daily_cap = fields.count("daily_cap", default=total_budget)
    guaranteed = fields.count("guaranteed_daily", default=0)
    if guaranteed > daily_cap:
        raise CampaignError(f"{where}.guaranteed_daily must not exceed its daily_cap")
    min_tier = fields.tier("min_tier", tiers, default=0)
    prize = Prize(
        prize_id,
        kind,
        fields.count("value", minimum=1),
        total_budget,
        daily_cap,
        guaranteed,
        fields.probability("base_probability"),
        fields.tier_weights("tier_weights", tiers),
        min_tier,
        fields.flag("high_value", default=kind is PrizeKind.ITEM),
    )
    fields.done()
    return prize


def _check_unique(prize_ids: Sequence[str]) -> None:
    seen: set[str] = set()
    for prize_id in prize_ids:
        if prize_id in seen:
            raise CampaignError(f"prize id {prize_id!r} is listed twice")
        seen.add(prize_id)


def _check_odds(prizes: Sequence[Prize], tiers: int) -> None:
    for tier in range(tiers):
        total = math.fsum(prize.probability(tier) for prize in prizes)
        if total > 1.0:
            raise CampaignError(
                f"tier {tier} would win with probability {total:.6g}: base_probability x "
                "tier weight over all prizes must add up to at most 1 for every tier",
                "probabilities_exceed_one",
            )


def _local(epoch_ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, zone)


class _Fields:
    """Typed reads of one JSON object's fields; errors name ``where`` and the field."""

    def __init__(self, document: object, where: str) -> None:
        if not isinstance(document, Mapping):
            raise CampaignError(f"{where} must be a JSON object")
        self._document: Mapping[str, Any] = document
        self._where = where
        self._read: set[str] = set()

    def done(self) -> None:
        unknown = sorted(set(self._document) - self._read)
        if unknown:
            raise CampaignError(f"{self._where}: unknown field(s): {', '.join(unknown)}")

    def _get(self, name: str, required: bool = True) -> Any:
        self._read.add(name)
        value = self._document.get(name)
        if value is None and required:
            raise CampaignError(f"{self._name(name)} is required")
        return value

    def _name(self, name: str) -> str:
        return name if self._where == "campaign" else f"{self._where}.{name}"

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise CampaignError(f"{self._name(name)} must be a non-empty printable string")
        if len(value) > 200:
            raise CampaignError(f"{self._name(name)} must be at most 200 characters")
        return value

    def text_set(self, name: str) -> frozenset[str]:
        value = self._get(name, required=False)
        value = [] if value is None else value
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise CampaignError(f"{self._name(name)} must be a list of at most {MAX_LIST} strings")
        if not all(isinstance(item, str) and item.isprintable() and item for item in value):
            raise CampaignError(f"{self._name(name)} must hold non-empty printable strings")
        return frozenset(value)

    def list(self, name: str) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list):
            raise CampaignError(f"{self._name(name)} must be a list")
        return value

    def instant(self, name: str) -> int:
        value = self.text(name)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or not _YEARS[0] <= moment.year <= _YEARS[1]:
            raise CampaignError(
                f"{self._name(name)} must be an ISO-8601 time with an offset between the years "
                f"{_YEARS[0]} and {_YEARS[1]}, such as '2027-06-01T00:00:00+08:00'",
                "invalid_period",
            )
        return round(moment.timestamp() * 1000)

    def count(
        self, name: str, *, default: int | None = None, minimum: int = 0, maximum: int = MAX_COUNT
    ) -> int:
        value = self._get(name, required=default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise CampaignError(
                f"{self._name(name)} must be an integer from {minimum} to {maximum}"
            )
        return value

    def probability(self, name: str) -> float:
        value = self._number(name, self._get(name))
        if not 0.0 <= value <= 1.0:
            raise CampaignError(f"{self._name(name)} must be between 0 and 1")
        return value

    def tier(self, name: str, tiers: int, *, default: int) -> int:
        value = self._get(name, required=False)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise CampaignError(f"{self._name(name)} must be a tier number, 0 to {tiers - 1}")
        if not 0 <= value < tiers:
            raise CampaignError(
                f"{self._name(name)}: unknown tier {value}; tiers are 0 to {tiers - 1}",
                "unknown_tier",
            )
        return value

    def tier_weights(self, name: str, tiers: int) -> tuple[float, ...]:
        value = self._get(name, required=False)
        value = {} if value is None else value
        if not isinstance(value, Mapping):
            raise CampaignError(f"{self._name(name)} must map tiers to weights")
        weights = [1.0] * tiers
        for key, weight in value.items():
            if not (isinstance(key, str) and _TIER_KEY.fullmatch(key) and int(key) < tiers):
                raise CampaignError(
                    f"{self._name(name)}: unknown tier {key!r}; tiers are 0 to {tiers - 1}",
                    "unknown_tier",
                )
            number = self._number(f"{name}.{key}", weight)
            if number < 0:
                raise CampaignError(f"{self._name(name)}.{key} must not be negative")
            weights[int(key)] = number
        return tuple(weights)

    def choice(self, name: str, choices: Sequence[str]) -> str:
        """One of ``choices``, the first when the field is absent."""
        value = self._get(name, required=False)
        if value is None:
            return choices[0]
        if value not in choices:
            raise CampaignError(f"{self._name(name)} must be one of {', '.join(choices)}")
        return str(value)

    def flag(self, name: str, *, default: bool) -> bool:
        value = self._get(name, required=False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise CampaignError(f"{self._name(name)} must be true or false")
        return value

    def _number(self, name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CampaignError(f"{self._name(name)} must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise CampaignError(f"{self._name(name)} must be finite")
        return number

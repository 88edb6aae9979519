"""The draw rule, in Python: what ``draw.lua`` does atomically in Redis, written again so that
anyone can recompute a draw (the audit, the statistical tests).

A draw's value is HMAC-SHA256(day seed, scan id + ":" + code), its first 53 bits: a uniform
integer below ``DRAW_SCALE``. The code is in the message because clients choose scan ids: with
the scan id alone, a scan id seen to win would win again with every other code that day.

Each prize a tier can win owns a fixed slice of ``[0, DRAW_SCALE)``, as wide as its probability
for that tier, in the campaign's prize order. A draw:

1. gets nothing at risk level 4 or above;
2. otherwise, among the prizes *available* to it (tier at least the prize's minimum, not a
   high-value prize at risk level 3, the member under the campaign's daily win limit, and the
   prize under its total budget and under today's release of its daily cap), takes the first
   whose guaranteed-daily count is not yet reached when the guarantee is due;
3. otherwise wins the available prize whose slice holds the draw value, if any.

An unavailable prize's slice is not given to others: the odds of the rest never change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from rewards.campaigns import Prize

DRAW_BITS = 53  # exact in a Lua number (a double)
DRAW_SCALE = 1 << DRAW_BITS
HIGHEST_RISK_FOR_LOW_VALUE = 3
NO_PRIZE = -1
_BLOCK = 64  # SHA-256's block size, HMAC's key length


def draw_value(seed: bytes, scan_id: str, code: str) -> int:
    digest = hmac.new(seed, draw_message(scan_id, code), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - DRAW_BITS)


def draw_message(scan_id: str, code: str) -> bytes:
    """What the seed signs (a code is 20 characters: the message splits one way only)."""
    return f"{scan_id}:{code}".encode()


class DrawValues:
    """``draw_value`` for one seed, with HMAC's padded keys hashed once (twice as fast)."""

    def __init__(self, seed: bytes) -> None:
        key = seed if len(seed) <= _BLOCK else hashlib.sha256(seed).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, scan_id: str, code: str) -> int:
        inner = self._inner.copy()
        inner.update(draw_message(scan_id, code))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return int.from_bytes(outer.digest()[:8], "big") >> (64 - DRAW_BITS)


def slices(prizes: Sequence[Prize], tier: int) -> list[tuple[int, int]]:
    """Each prize's ``[low, high)`` slice of the draw values for ``tier``."""
    bounds, cumulative = [], 0.0
    for prize in prizes:
        low = round(cumulative * DRAW_SCALE)
        cumulative += prize.probability(tier)
        bounds.append((low, min(DRAW_SCALE, round(cumulative * DRAW_SCALE))))
    return bounds


def eligible(prize: Prize, tier: int, risk: int) -> bool:
    """What a draw's own tier and risk allow, whatever the counters say."""
    if risk > HIGHEST_RISK_FOR_LOW_VALUE or tier < prize.min_tier:
        return False
    return risk < HIGHEST_RISK_FOR_LOW_VALUE or not prize.high_value


@dataclass(frozen=True, slots=True)
class Choice:
    prize: int
    """Index into the campaign's prizes, or ``NO_PRIZE``."""
    guaranteed: bool


def choose(
    value: int,
    bounds: Sequence[tuple[int, int]],
    available: Sequence[bool],
    guarantee_owed: Sequence[bool],
) -> Choice:
    """Step 2 and 3 of the rule; ``available`` already folds in step 1 and the counters."""
    for index, owed in enumerate(guarantee_owed):
        if owed and available[index]:
            return Choice(index, True)
    for index, (low, high) in enumerate(bounds):
        if available[index] and low <= value < high:
            return Choice(index, False)
    return Choice(NO_PRIZE, False)

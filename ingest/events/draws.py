"""Draw events: the draw log a campaign's draw script appends to its Redis stream (layout in
``rewards.draw_log``), decoded into the columns of ClickHouse ``draws``.

Each campaign has its own stream ``{camp:<id>}:draws`` (the campaign's hash tag: the draw script
touches one slot) and count of unsunk draws ``{camp:<id>}:draws:unsunk``;
``rewards.store.CAMPAIGNS_KEY`` holds the campaign ids. (campaign id, seq) identifies a draw:
the sink stores both with the row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from ingest.events.scans import Columns, split_framed
from rewards.campaigns import ID_PATTERN
from rewards.draw_log import (
    OUTCOME,
    OUTCOME_FIELD,
    PRIZE_FIELD,
    REQUEST,
    REQUEST_FIELD,
    REQUEST_STRINGS,
    SEPARATOR,
)

PRIZE_KINDS = ("cash", "points", "item")
_SEPARATOR_BYTES = SEPARATOR.encode()
_DAY_MS = 86_400_000
_STREAM_KEY = re.compile(rf"\{{camp:({ID_PATTERN})\}}:draws")


def campaign_of(stream: str) -> str:
    match = _STREAM_KEY.fullmatch(stream)
    if match is None:
        raise ValueError(f"{stream!r} is not a campaign's draw stream")
    return match.group(1)


def draws_in(fields: dict[bytes, bytes]) -> int:
    """How many draws an entry holds."""
    return len(fields.get(OUTCOME_FIELD, b"")) // OUTCOME.itemsize


class Prize(NamedTuple):
    id: str
    kind: str
    value: int


def decode_columns(
    campaign_id: str, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]
) -> Columns:
    """Columns of the ``draws`` table for stream entries ``(id, fields)`` of one campaign.

    ``ValueError`` (or ``KeyError``, ``UnicodeDecodeError``) for an entry not of the layout:
    the sink sets it aside rather than store it wrongly.
    """
    fixed_parts: list[bytes] = []
    strings: list[bytes] = []
    outcome_parts: list[bytes] = []
    prize_parts: list[dict[str, np.ndarray[Any, Any]]] = []
    entry_ms: list[int] = []
    per_entry: list[int] = []
    for entry_id, fields in entries:
        requests = split_framed(fields[REQUEST_FIELD], REQUEST.itemsize, fixed_parts, strings)
        outcome_blob = fields[OUTCOME_FIELD]
        if len(outcome_blob) != requests * OUTCOME.itemsize:
            raise ValueError(f"{requests} requests for {len(outcome_blob)} bytes of outcomes")
        outcomes = np.frombuffer(outcome_blob, dtype=OUTCOME)
        prize_parts.append(_prize_columns(_prizes(fields[PRIZE_FIELD]), outcomes))
        outcome_parts.append(outcome_blob)
        entry_ms.append(int(entry_id.partition(b"-")[0]))
        per_entry.append(requests)
    count = len(fixed_parts)
    string_rows = _SEPARATOR_BYTES.join(strings).decode().split(SEPARATOR)
    width = len(REQUEST_STRINGS)
    if count and len(string_rows) != count * width:
        raise ValueError(f"{len(string_rows)} string fields for {count} draws")
    fixed = np.frombuffer(b"".join(fixed_parts), dtype=REQUEST, count=count)
    outcomes = np.frombuffer(b"".join(outcome_parts), dtype=OUTCOME, count=count)
    time_ms = fixed["time_ms"]
    columns: Columns = {
        "date": (time_ms // _DAY_MS).astype("datetime64[D]"),
        "time": (time_ms // 1000).astype("datetime64[s]"),
        "time_ms": time_ms,
        "campaign_id": np.full(count, campaign_id, dtype=object),
        "day": fixed["day"].astype("datetime64[D]"),
        "seq": outcomes["seq"],
        "config_version": fixed["config_version"],
        "serial": fixed["serial"],
        "tier": fixed["tier"],
        "risk": fixed["risk"],
        "draw_value": fixed["draw_value"],
        "won": (outcomes["prize"] >= 0).astype(np.uint8),
        "guaranteed": outcomes["guaranteed"],
        "available": outcomes["available"],
        "points_balance": outcomes["points_balance"],
        "stream_ms": np.repeat(np.array(entry_ms, dtype=np.uint64), per_entry),
    }
    for position, name in enumerate(REQUEST_STRINGS):
        columns[name] = np.array(string_rows[position::width] if count else [], dtype=object)
    for name in ("prize_id", "prize_kind", "prize_value"):
        parts = [part[name] for part in prize_parts]
        columns[name] = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    return columns


def _prize_columns(prizes: list[Prize], outcomes: np.ndarray[Any, Any]) -> dict[str, Any]:
    """The won prize's id, kind and value, per draw."""
    index, mask = outcomes["prize"], outcomes["available"]
    if len(index) and (index.min() < -1 or index.max() >= len(prizes)):
        raise ValueError(f"a prize index outside the {len(prizes)} prizes")
    if len(mask) and int(mask.max()) >> len(prizes):
        raise ValueError(f"an available mask beyond the {len(prizes)} prizes")
    none = Prize("", "", 0)
    ids, kinds, values = (
        np.array([*[getattr(p, f) for p in prizes], getattr(none, f)], dtype=dtype)
        for f, dtype in (("id", object), ("kind", object), ("value", np.int64))
    )
    # index -1 (no prize) takes the last element: the empty prize
    return {
        "prize_id": ids[index],
        "prize_kind": kinds[index],
        "prize_value": values[index],
    }


def _prizes(blob: bytes) -> list[Prize]:
    described = orjson.loads(blob)
    if not isinstance(described, list):
        raise ValueError("the prizes are not a JSON list")
    prizes = []
    for prize in described:
        if not isinstance(prize, dict) or prize.get("kind") not in PRIZE_KINDS:
            raise ValueError(f"not a prize: {prize!r}")
        prize_id, value = prize.get("id"), prize.get("value")
        if not isinstance(prize_id, str) or type(value) is not int or not -(2**63) <= value < 2**63:
            raise ValueError(f"not a prize: {prize!r}")
        prizes.append(Prize(prize_id, prize["kind"], value))
    return prizes

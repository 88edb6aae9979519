"""Draw events: the draw log a campaign's draw script appends to its Redis stream, and its
decoding into the columns of ClickHouse ``draws``.

Each campaign has its own stream ``{camp:<id>}:draws`` (the campaign's hash tag: the draw script
touches one slot) and count of unsunk draws ``{camp:<id>}:draws:unsunk``;
``rewards.store.CAMPAIGNS_KEY`` holds the campaign ids. An entry holds the draws of one script
call in three fields:

- ``r``: each draw's request framed by its length (``<I``), a JSON object with the
  ``REQUEST_STRINGS``, the ``REQUEST_NUMBERS`` and ``day``, the campaign's local day
  (``YYYY-MM-DD``);
- ``o``: one ``OUTCOME`` per request, in the same order: the draw's seq (unique and increasing
  in the campaign), the prize index (-1: no prize), 1 when the guaranteed-daily rule gave the
  prize, the mask of the prizes the draw could win (bit i: prize i) and the member's points
  balance after the draw (0 unless a points prize was won);
- ``p``: the campaign's prizes by index, JSON ``[{"id": str, "kind": str, "value": int}]``.

(campaign id, seq) identifies a draw: the sink stores both with the row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from ingest.scan_events import Columns
from rewards import draws
from rewards.campaigns import ID_PATTERN

REQUEST_FIELD, OUTCOME_FIELD, PRIZE_FIELD = b"r", b"o", b"p"
OUTCOME = np.dtype(
    [
        ("seq", "<u8"),
        ("prize", "<i2"),
        ("guaranteed", "u1"),
        ("available", "<u4"),
        ("points_balance", "<i8"),
    ]
)
"""``rewards.draws.OUTCOME`` (``struct '<QhBIq'``): packed, no padding."""
assert OUTCOME.itemsize == draws.OUTCOME.size
PRIZE_KINDS = ("cash", "points", "item")
REQUEST_STRINGS = ("scan_id", "member_id", "code", "sku", "batch_id")
REQUEST_NUMBERS: dict[str, tuple[str, type[np.unsignedinteger[Any]]]] = {
    "serial": ("serial", np.uint64),
    "time_ms": ("time_ms", np.uint64),
    "tier": ("tier", np.uint8),
    "risk": ("risk", np.uint8),
    "draw_value": ("draw_value", np.uint64),
    "version": ("config_version", np.uint32),
}
"""Request field: its column and type (unsigned)."""

_FRAME_SIZE = 4
_DAY_MS = 86_400_000
_STREAM_KEY = re.compile(rf"\{{camp:({ID_PATTERN})\}}:draws")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


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


_NO_PRIZE = Prize("", "", 0)


def decode_columns(
    campaign_id: str, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]
) -> Columns:
    """Columns of the ``draws`` table for stream entries ``(id, fields)`` of one campaign.

    Raises ``ValueError`` or ``KeyError`` for an entry that is not draws of this layout.
    """
    strings: dict[str, list[str]] = {name: [] for name in REQUEST_STRINGS}
    numbers: dict[str, list[int]] = {name: [] for name in REQUEST_NUMBERS}
    days: list[str] = []
    given: list[Prize] = []
    available: list[list[str]] = []
    outcome_parts, entry_ms, per_entry = [], [], []
    for entry_id, fields in entries:
        requests = _requests(fields[REQUEST_FIELD])
        outcomes = np.frombuffer(fields[OUTCOME_FIELD], dtype=OUTCOME)
        if len(outcomes) != len(requests):
            raise ValueError(f"{len(requests)} requests for {len(outcomes)} outcomes")
        prizes = _prizes(fields[PRIZE_FIELD])
        for request in requests:
            for name in REQUEST_STRINGS:
                strings[name].append(_string(request, name))
            for name, (_, dtype) in REQUEST_NUMBERS.items():
                numbers[name].append(_unsigned(request, name, dtype))
            days.append(_day(request))
        prize_and_mask = zip(
            outcomes["prize"].tolist(), outcomes["available"].tolist(), strict=True
        )
        for index, mask in prize_and_mask:
            if not -1 <= index < len(prizes) or mask >> len(prizes):
                raise ValueError(f"prize {index} or mask {mask:#x} of {len(prizes)} prizes")
            given.append(prizes[index] if index >= 0 else _NO_PRIZE)
            available.append([prize.id for i, prize in enumerate(prizes) if mask >> i & 1])
        outcome_parts.append(fields[OUTCOME_FIELD])
        entry_ms.append(int(entry_id.partition(b"-")[0]))
        per_entry.append(len(requests))
    count = len(days)
    outcomes = np.frombuffer(b"".join(outcome_parts), dtype=OUTCOME, count=count)
    columns: Columns = {
        column: np.array(numbers[name], dtype=dtype)
        for name, (column, dtype) in REQUEST_NUMBERS.items()
    }
    columns |= {name: np.array(texts, dtype=object) for name, texts in strings.items()}
    time_ms = columns["time_ms"]
    columns |= {
        "date": (time_ms // _DAY_MS).astype("datetime64[D]"),
        "time": (time_ms // 1000).astype("datetime64[s]"),
        "campaign_id": np.full(count, campaign_id, dtype=object),
        "day": np.array(days, dtype="datetime64[D]"),
        "seq": outcomes["seq"],
        "won": (outcomes["prize"] >= 0).astype(np.uint8),
        "prize_id": np.array([prize.id for prize in given], dtype=object),
        "prize_kind": np.array([prize.kind for prize in given], dtype=object),
        "prize_value": np.array([prize.value for prize in given], dtype=np.int64),
        "guaranteed": outcomes["guaranteed"],
        "available": _object_array(available),
        "points_balance": outcomes["points_balance"],
        "stream_ms": np.repeat(np.array(entry_ms, dtype=np.uint64), per_entry),
    }
    return columns


def _requests(blob: bytes) -> list[dict[str, Any]]:
    requests, at = [], 0
    while at < len(blob):
        start = at + _FRAME_SIZE
        at = start + int.from_bytes(blob[at:start], "little")
        if at > len(blob):
            raise ValueError("a request runs past the end of the field")
        request = orjson.loads(blob[start:at])
        if not isinstance(request, dict):
            raise ValueError("a request is not a JSON object")
        requests.append(request)
    return requests


def _prizes(blob: bytes) -> list[Prize]:
    described = orjson.loads(blob)
    if not isinstance(described, list):
        raise ValueError("the prizes are not a JSON list")
    prizes = []
    for prize in described:
        if not isinstance(prize, dict) or prize.get("kind") not in PRIZE_KINDS:
            raise ValueError(f"not a prize: {prize!r}")
        prizes.append(Prize(_string(prize, "id"), prize["kind"], _integer(prize, "value")))
    return prizes


def _string(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def _integer(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} is not a 64-bit integer")
    return value


def _unsigned(data: dict[str, Any], name: str, dtype: type[np.unsignedinteger[Any]]) -> int:
    value = data[name]
    if type(value) is not int or not 0 <= value <= np.iinfo(dtype).max:
        raise ValueError(f"{name} is not a {np.dtype(dtype).name}")
    return value


def _day(data: dict[str, Any]) -> str:
    day = _string(data, "day")
    if _DAY.fullmatch(day) is None:
        raise ValueError(f"day {day!r} is not YYYY-MM-DD")
    return day


def _object_array(values: list[list[str]]) -> np.ndarray[Any, np.dtype[np.object_]]:
    """One list per row (``np.array`` would make a 2-D array of lists of equal length)."""
    array = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):
        array[row] = value
    return array

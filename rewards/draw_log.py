"""The draw log's layout: what ``draw.lua`` appends to a campaign's stream for every draw, which
the sink moves into ClickHouse ``draws``.

An entry holds the draws of one script call in three fields:

- ``r``: each draw's request framed by its length (``<I``): ``REQUEST`` (packed little-endian
  numbers, built by the worker) followed by the ``REQUEST_STRINGS`` joined by ``SEPARATOR``, in
  UTF-8 (request text is printable, so it never contains the separator);
- ``o``: one ``OUTCOME`` per request, in the same order, packed by the script: the draw's number
  in its campaign, the prize index (-1: none), 1 when the guaranteed-daily rule gave it, the
  mask of the prizes the draw could win (bit i: prize i), the member's points balance after it
  (0 unless a points prize was won);
- ``p``: the campaign's prizes by index, JSON ``[{"id", "kind", "value"}]``.

Fixed-width numbers and one string split per entry, as scan events, so that the sink decodes a
batch with numpy instead of a JSON object per draw.
"""

from __future__ import annotations

import struct
from datetime import date

import numpy as np

REQUEST_FIELD, OUTCOME_FIELD, PRIZE_FIELD = b"r", b"o", b"p"
REQUEST = np.dtype(
    [
        ("time_ms", "<u8"),
        ("serial", "<u8"),
        ("draw_value", "<u8"),
        ("config_version", "<u4"),
        ("day", "<u2"),  # days since 1970-01-01, as a ClickHouse Date
        ("tier", "u1"),
        ("risk", "u1"),
    ]
)
_REQUEST = struct.Struct("<QQQIHBB")
assert _REQUEST.size == REQUEST.itemsize
REQUEST_STRINGS = ("scan_id", "member_id", "code")
SEPARATOR = "\x1f"
FRAME = struct.Struct("<I")
OUTCOME = np.dtype(
    [
        ("seq", "<u8"),
        ("prize", "<i2"),
        ("guaranteed", "u1"),
        ("available", "<u4"),
        ("points_balance", "<i8"),
    ]
)
OUTCOME_STRUCT = struct.Struct("<QhBIq")  # as OUTCOME in draw.lua
assert OUTCOME_STRUCT.size == OUTCOME.itemsize
_EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def encode_request(
    numbers: tuple[int, int, int, int, int, int, int], strings: tuple[str, ...]
) -> bytes:
    """A request without its frame: ``numbers`` in the order of ``REQUEST``, ``strings`` in the
    order of ``REQUEST_STRINGS``."""
    return _REQUEST.pack(*numbers) + SEPARATOR.join(strings).encode()

"""Scan events: what each answered scan appends to a Redis stream, and its decoding into columns.

The stream is the write-ahead log between the scan path and ClickHouse. It is split into one
stream per partition (``ingest.events.partitions``: ``<tag>:events``); the scan-state keys of a
serial share the tag of its partition, so one script per partition decides scans and appends
their events atomically, on one Redis or on Redis Cluster.

An entry holds the events of one script call (a micro-batch's scans of one partition: one
XADD per call costs Redis a fraction of one per scan) in two fields:

- ``e``: each event framed by its length (``<I``): ``FIXED`` (packed little-endian numbers)
  followed by the ``STRING_FIELDS`` joined by ``SEPARATOR``, in UTF-8 (request text fields are
  printable, so they never contain it);
- ``s``: one ``STATE`` per event, as the scan-state script wrote it (first scan? scan count,
  distinct devices).

The partition, the entry id (``<ms>-<seq>``) and the event's index in the entry identify an
event exactly once; the sink stores them with the row. ``<tag>:unsunk`` counts the events of a
partition not yet in ClickHouse: the scan script adds, the sink's acknowledgement subtracts.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fraud.verdicts import Verdict

MAX_EVENTS_PER_ENTRY = 256
"""The scan path splits a partition's scans into script calls of at most this many, so that the
sink can size its reads: an entry holds one call's events."""
CONSUMER_GROUP = "sink"
EVENT_FIELD, STATE_FIELD = b"e", b"s"
SEPARATOR = "\x1f"
_SEPARATOR_BYTES = SEPARATOR.encode()

FIXED = np.dtype(
    [
        ("time_ms", "<u8"),
        ("serial", "<u8"),
        ("client_time_ms", "<i8"),
        ("lat", "<f8"),
        ("lon", "<f8"),
        ("accuracy_m", "<f4"),
        ("latency_us", "<u4"),
        ("key_id", "u1"),
        ("verdict", "u1"),
        ("risk", "u1"),
        ("distance_km", "<f4"),
    ]
)
_FIXED_STRUCT = struct.Struct("<QQqddfIBBBf")
assert _FIXED_STRUCT.size == FIXED.itemsize

STATE = np.dtype([("first_scan", "u1"), ("scan_count", "<u4"), ("distinct_devices", "<u2")])
_FRAME = struct.Struct("<I")

STRING_FIELDS = (
    "scan_id",
    "code",
    "batch_id",
    "sku",
    "gtin",
    "member_id",
    "device_id",
    "ip",
    "flags",
    "flag_details",
    "distributor_id",
    "surfaced_in",
)


def events_in(fields: dict[bytes, bytes]) -> int:
    """How many events an entry holds."""
    return len(fields.get(STATE_FIELD, b"")) // STATE.itemsize


class ScanEvent(NamedTuple):
    """One answered scan as the server knows it before the scan state is updated.

    ``serial`` is 0 and the batch fields are empty for codes that failed verification; ``lat`` and
    ``lon`` are NaN without a location, ``accuracy_m`` NaN when not reported and
    ``client_time_ms`` 0 when the client sent no time. ``flags`` are flag names; ``flag_details``
    is a JSON array with the numbers behind them (``"[]"`` when there are none). ``risk`` is the
    fraud risk level 0-4; ``distributor_id`` the distributor the code was shipped to,
    ``surfaced_in`` the distributor whose territory the scan lies in and ``distance_km`` how far
    outside the shipped-to territory it lies (0 inside, NaN when not measured).
    """

    time_ms: int
    serial: int
    key_id: int
    verdict: Verdict
    lat: float
    lon: float
    accuracy_m: float
    client_time_ms: int
    latency_us: int
    scan_id: str
    code: str
    batch_id: str
    sku: str
    gtin: str
    member_id: str
    device_id: str
    ip: str
    flags: tuple[str, ...]
    flag_details: str = "[]"
    risk: int = 0
    distributor_id: str = ""
    surfaced_in: str = ""
    distance_km: float = math.nan

    def encode(self) -> bytes:
        """The event framed by its length, ready to be joined with others into an entry."""
        fixed = _FIXED_STRUCT.pack(
            self.time_ms,
            self.serial,
            self.client_time_ms,
            self.lat,
            self.lon,
            self.accuracy_m,
            min(self.latency_us, 0xFFFFFFFF),
            self.key_id,
            self.verdict,
            self.risk,
            self.distance_km,
        )
        strings = SEPARATOR.join(
            (
                self.scan_id,
                self.code,
                self.batch_id,
                self.sku,
                self.gtin,
                self.member_id,
                self.device_id,
                self.ip,
                ",".join(self.flags),
                self.flag_details,
                self.distributor_id,
                self.surfaced_in,
            )
        ).encode()
        return _FRAME.pack(len(fixed) + len(strings)) + fixed + strings


Columns = dict[str, npt.NDArray[np.generic]]


def decode_columns(
    partition: int,
    entries: Sequence[tuple[bytes, dict[bytes, bytes]]],
    *,
    utf8: bool = False,
) -> Columns:
    """Columns of the ``scans`` table for stream entries ``(id, fields)`` of one partition.

    ``utf8``: the text columns hold the UTF-8 ``bytes`` of the entries (checked, as ``str``
    are), which a client inserts without encoding every value again.
    """
    fixed_parts: list[bytes] = []
    strings: list[bytes] = []
    state_parts, entry_ms, entry_seq, entry_events = [], [], [], []
    for entry_id, fields in entries:
        ms, _, seq = entry_id.partition(b"-")
        split_framed(fields[EVENT_FIELD], FIXED.itemsize, fixed_parts, strings)
        state_parts.append(fields[STATE_FIELD])
        entry_ms.append(int(ms))
        entry_seq.append(int(seq))
        entry_events.append(events_in(fields))
    count = len(fixed_parts)
    per_entry = np.array(entry_events, dtype=np.int64)
    entry_starts = np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    stream_index = (np.arange(count) - entry_starts).astype(np.uint16)
    # one decode and split for all rows: the fields of a row are consecutive
    joined = _SEPARATOR_BYTES.join(strings)
    text = joined.decode()  # checks the UTF-8 of the bytes kept too
    string_rows = joined.split(_SEPARATOR_BYTES) if utf8 else text.split(SEPARATOR)
    if count and len(string_rows) != count * len(STRING_FIELDS):
        # an event of another layout (an older writer): never insert it misaligned
        raise ValueError(f"{len(string_rows)} string fields for {count} events")
    fixed = np.frombuffer(b"".join(fixed_parts), dtype=FIXED, count=count)
    state = np.frombuffer(b"".join(state_parts), dtype=STATE, count=count)
    time_ms = fixed["time_ms"]
    columns: Columns = {
        "date": (time_ms // 86_400_000).astype("datetime64[D]"),
        "time": (time_ms // 1000).astype("datetime64[s]"),
        "time_ms": time_ms,
        "client_time_ms": fixed["client_time_ms"],
        "serial": fixed["serial"],
        "key_id": fixed["key_id"],
        "verdict": (_VERDICT_UTF8 if utf8 else _VERDICT_LABELS)[fixed["verdict"]],
        "genuine": (fixed["verdict"] == Verdict.GENUINE).astype(np.uint8),
        "lat": fixed["lat"],
        "lon": fixed["lon"],
        "accuracy_m": fixed["accuracy_m"],
        "has_location": (~np.isnan(fixed["lat"])).astype(np.uint8),
        "latency_us": fixed["latency_us"],
        "risk": fixed["risk"],
        "distance_km": fixed["distance_km"],
        "first_scan": state["first_scan"],
        "scan_count": state["scan_count"],
        "distinct_devices": state["distinct_devices"],
        "stream_partition": np.full(count, partition, dtype=np.uint8),
        "stream_ms": np.repeat(np.array(entry_ms, dtype=np.uint64), per_entry),
        "stream_seq": np.repeat(np.array(entry_seq, dtype=np.uint64), per_entry),
        "stream_index": stream_index,
    }
    width = len(STRING_FIELDS)
    for position, name in enumerate(STRING_FIELDS):
        values = string_rows[position::width] if count else []
        columns["flag_list" if name == "flags" else name] = np.array(values, dtype=object)
    return columns


def split_framed(
    blob: bytes, fixed_size: int, fixed_parts: list[bytes], strings: list[bytes]
) -> int:
    """Appends the fixed-width part and the joined strings of each length-framed record in
    ``blob`` (scan events, prize draw requests); how many records it holds."""
    at, count = 0, 0
    while at < len(blob):
        [length] = _FRAME.unpack_from(blob, at)
        start = at + _FRAME.size
        at = start + length
        if length < fixed_size or at > len(blob):
            raise ValueError("a record is cut short")
        fixed_parts.append(blob[start : start + fixed_size])
        strings.append(blob[start + fixed_size : at])
        count += 1
    return count


_VERDICT_LABELS = np.array([""] + [v.label for v in Verdict], dtype=object)
_VERDICT_UTF8 = np.array([label.encode() for label in _VERDICT_LABELS], dtype=object)

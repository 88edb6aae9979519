"""Scan state in Redis, described as data: which partition a scan belongs to, the packed
arguments of ``scan_state.lua`` and the meaning of its replies. No I/O here.

Per partition tag (``ingest.events.partitions``, ``{scans:N.S}``):

- ``:seen:<serial // 65472>``: a bitmap, one bit per issued serial of a range that has been
  scanned at least once; it decides "first scan" and costs 8 KiB per scanned range (65,472
  bits and the string header fill one 8 KiB allocation exactly);
- ``:rec:<serial // 128>``: a hash of the codes' records (``fraud.scan_record``: 42 bytes plus
  4 per device remembered, up to 4), field ``serial % 128``. Buckets of 128 keep each hash a
  listpack (Redis' compact encoding, up to 128 fields of up to 64 bytes);
- ``:sid:<retry key>``: the state a scan with a client scan_id was answered with, for retries,
  with a TTL (the key digests the scan_id with the code, device and member: the same id sent
  for another code or by another phone is another scan);
- ``:events``: the event stream, one entry per script call, and ``:unsunk``, the number of its
  events not yet in ClickHouse (see ``ingest.events.scans``).

A serial's partition comes from its bitmap's range, so a large code batch spreads over all
partitions (and cluster nodes) while each script touches one slot.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import NamedTuple

from codes.commands import LuaScript, ScriptCall
from fraud.scan_record import DEVICE_SIZE, MEMBER_SIZE, NO_LOCATION_E7, ScanRecord
from ingest.events.partitions import Partitions

STREAM_FULL = "STREAM_FULL"


class StreamFull(Exception):
    """The partition's events not yet in ClickHouse are at their bound: the script refused
    the scans and changed nothing, so they may be sent again later."""


SCAN_STATE = LuaScript.load(
    __package__ or "ingest.scan", "scan_state.lua", {STREAM_FULL: StreamFull}
)
SEEN_RANGE = 65_472
_RECORD_BUCKET = 128  # as in scan_state.lua

_SCAN = struct.Struct("<BQQii4s8s")
_STATE = struct.Struct("<BIH")
_KEY_LENGTH = struct.Struct("<H")
_RETRIED = ord("R")


def unsunk_limit_per_partition(max_unsunk_events: int, partitions: Partitions) -> int:
    """The bound is kept per partition (each script sees only its own count)."""
    return max(1, max_unsunk_events // partitions.scans)


def partition_of_serial(serial: int, partitions: Partitions) -> int:
    """Consecutive ranges of serials go to consecutive partitions, round the ring."""
    return (serial // SEEN_RANGE) % partitions.scans


def device_digest(device_id: str) -> bytes:
    """How a device is told apart in records: 4 bytes, zeros for no device."""
    return _digest(device_id, DEVICE_SIZE)


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest() if text else bytes(size)


def pack_scan(
    serial: int | None,
    now_ms: int,
    lat: float | None,
    lon: float | None,
    device: bytes,
    member: bytes,
) -> bytes:
    """What the script needs to update a code's record; ``serial`` None leaves state alone.
    ``device`` and ``member`` are the digests of ``device_digest`` and ``member_digest``."""
    if lat is None or lon is None:  # fraud.scan_record.place_e7, inline: it runs for every scan
        lat_e7 = lon_e7 = NO_LOCATION_E7
    else:
        lat_e7, lon_e7 = round(lat * 1e7), round(lon * 1e7)
    return _SCAN.pack(
        serial is not None,
        serial or 0,
        now_ms,
        lat_e7,
        lon_e7,
        device,
        member,
    )


class ScanState(NamedTuple):
    first_scan: bool
    scan_count: int
    distinct_devices: int
    retried: bool

    @classmethod
    def from_reply(cls, reply: bytes) -> ScanState:
        first, count, devices = _STATE.unpack_from(reply, 1)
        return cls(first == 1, count, devices, reply[0] == _RETRIED)


def member_digest(member_id: str) -> bytes:
    return _digest(member_id, MEMBER_SIZE)


def read_history(serial: int, partitions: Partitions) -> tuple[str, str, str]:
    """The command that reads a code's record, for ``history_of`` (a plain HGET: a script
    call per partition cost Redis and the client more than the reads it saved)."""
    tag = partitions.scan_tag(partition_of_serial(serial, partitions))
    return ("HGET", f"{tag}:rec:{serial // _RECORD_BUCKET}", str(serial % _RECORD_BUCKET))


def history_of(record: bytes | None) -> ScanRecord | None:
    """A code's record as the ``read_history`` reply holds it; None for a code never scanned."""
    return ScanRecord.unpack(record) if record else None


def retry_key(scan_id: str | None, code: str, device_id: str, member_id: str) -> str:
    """What a client scan_id is remembered under ("" without one)."""
    if not scan_id:
        return ""
    scan = "\x1f".join((scan_id, code, device_id, member_id)).encode()
    return hashlib.blake2b(scan, digest_size=12).hexdigest()


def scan_argument(packed_scan: bytes, retry_key: str, event: bytes) -> bytes:
    """One scan as the script reads it: the packed scan, its ``retry_key`` and the framed
    event."""
    encoded_key = retry_key.encode()
    return packed_scan + _KEY_LENGTH.pack(len(encoded_key)) + encoded_key + event


def decide_scans(
    partitions: Partitions,
    partition: int,
    scans: Sequence[bytes],
    max_unsunk_per_partition: int,
    scan_id_ttl_s: int,
) -> ScriptCall:
    """One script call for the ``scan_argument`` values of a partition's scans."""
    return ScriptCall(
        SCAN_STATE,
        (partitions.stream_key(partition), partitions.unsunk_key(partition)),
        (max_unsunk_per_partition, scan_id_ttl_s, b"".join(scans)),
    )

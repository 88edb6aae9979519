"""Scan state in Redis, described as data: which partition a scan belongs to, the packed
arguments of ``scan_state.lua`` and the meaning of its replies. No I/O here.

Per partition tag ``{scans:N}`` (see ``scan_events``):

- ``:seen:<serial // 65472>``: a bitmap, one bit per issued serial of a range that has been
  scanned at least once; it decides "first scan" and costs 8 KiB per scanned range (65,472
  bits and the string header fill one 8 KiB allocation exactly);
- ``:rec:<serial // 128>``: a hash of packed records, field ``serial % 128``, 42 bytes plus 4 per
  distinct device (up to 4): first and last scan time and place, first member, scan count,
  distinct devices (exact up to 4; 5 means "five or more"). Buckets of 128 keep each hash a
  listpack (Redis' compact encoding, up to 128 fields of up to 64 bytes);
- ``:sid:<retry key>``: the state a scan with a client scan_id was answered with, for retries,
  with a TTL (the key digests the scan_id with the code, device and member: the same id sent
  for another code or by another phone is another scan);
- ``:events``: the event stream, one entry per script call, and ``:unsunk``, the number of its
  events not yet in ClickHouse (see ``scan_events``).

A serial's partition comes from its bitmap's range, so a large batch spreads over all
partitions (and cluster nodes) while each script touches one slot.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Sequence
from typing import NamedTuple

from codes.commands import LuaScript, ScriptCall
from fraud.clones import CodeHistory
from ingest.events.scans import PARTITIONS, partition_tag, stream_key, unsunk_key

SCAN_STATE = LuaScript.load(__package__ or "ingest.scan", "scan_state.lua")
SEEN_RANGE = 65_472
_RECORD_BUCKET = 128  # as in scan_state.lua
NO_LOCATION_E7 = -(2**31)

_SCAN = struct.Struct("<BQQii4s8s")
_STATE = struct.Struct("<BIH")
_KEY_LENGTH = struct.Struct("<H")
_RETRIED = ord("R")
_RECORD_TAIL = struct.Struct("<iiiiIH8s")  # after first and last ms (6 bytes each)
_DEVICE_SIZE = 4


def unsunk_limit_per_partition(max_unsunk_events: int) -> int:
    """The bound is kept per partition (each script sees only its own count)."""
    return max(1, max_unsunk_events // PARTITIONS)


def partition_of_serial(serial: int) -> int:
    return (serial // SEEN_RANGE) % PARTITIONS


def partition_of_text(text: str) -> int:
    """For scans without a valid serial: the same text always lands in the same partition."""
    return zlib.crc32(text.encode()) % PARTITIONS


def device_digest(device_id: str) -> bytes:
    """How a device is told apart in records: 4 bytes, zeros for no device."""
    return _digest(device_id, _DEVICE_SIZE)


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
    if lat is None or lon is None:
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
    return _digest(member_id, 8)


def read_history(serial: int) -> tuple[str, str, str]:
    """The command that reads a code's record, for ``history_of`` (a plain HGET: a script
    call per partition cost Redis and the client more than the reads it saved)."""
    tag = partition_tag(partition_of_serial(serial))
    return ("HGET", f"{tag}:rec:{serial // _RECORD_BUCKET}", str(serial % _RECORD_BUCKET))


def history_of(record: bytes | None) -> CodeHistory | None:
    """A code's record as the fraud rules read it; None for a code never scanned."""
    if not record:
        return None
    first_ms = int.from_bytes(record[0:6], "little")
    last_ms = int.from_bytes(record[6:12], "little")
    first_lat, first_lon, last_lat, last_lon, count, distinct, _ = _RECORD_TAIL.unpack_from(
        record, 12
    )
    devices = record[12 + _RECORD_TAIL.size :]
    return CodeHistory(
        first_ms,
        last_ms,
        _degrees(first_lat),
        _degrees(first_lon),
        _degrees(last_lat),
        _degrees(last_lon),
        count,
        distinct,
        tuple(devices[at : at + _DEVICE_SIZE] for at in range(0, len(devices), _DEVICE_SIZE)),
    )


def _degrees(e7: int) -> float:
    return math.nan if e7 == NO_LOCATION_E7 else e7 / 1e7


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
    partition: int,
    scans: Sequence[bytes],
    max_unsunk_per_partition: int,
    scan_id_ttl_s: int,
) -> ScriptCall:
    """One script call for the ``scan_argument`` values of a partition's scans."""
    return ScriptCall(
        SCAN_STATE,
        (stream_key(partition), unsunk_key(partition)),
        (max_unsunk_per_partition, scan_id_ttl_s, b"".join(scans)),
    )


STREAM_FULL = "STREAM_FULL"

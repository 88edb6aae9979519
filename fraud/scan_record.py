"""A scanned code's record: what the scan state keeps of each code, packed, and the rule that
updates it with a scan.

``ingest/scan/scan_state.lua`` keeps the packed records in Redis and applies ``record_scan`` to
them; ``fraud.assessment`` applies it here to the scans of one code within a micro-batch, for
the clone rule. So a scan sees the same record whether the scan before it came in its own batch
or in an earlier one (tests/test_scan_record.py runs both on the same scans).

Packed, little-endian: first and last scan ms (6 bytes each), first and last place (latitude
and longitude in 1e-7 degrees, int32, ``NO_LOCATION_E7`` where unknown), scan count (uint32),
distinct devices (uint16), the first scanner's member digest (8 bytes): 42 bytes; then the
digests of the devices remembered, 4 bytes each, the first scanner's first.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

DEVICE_SIZE = 4
MEMBER_SIZE = 8
MAX_DEVICES = 4  # remembered and counted exactly; MAX_DEVICES + 1 then means "more"
NO_DEVICE = bytes(DEVICE_SIZE)
NO_LOCATION_E7 = -(2**31)
NO_PLACE_E7 = (NO_LOCATION_E7, NO_LOCATION_E7)
# the 6-byte times as their low 4 and high 2 bytes: one unpack reads the whole head
HEAD = struct.Struct(f"<IHIHiiiiIH{MEMBER_SIZE}s")
_LOW_32 = 0xFFFF_FFFF


class ScanRecord(NamedTuple):
    """A code's record, unpacked: places in degrees, NaN where unknown."""

    first_ms: int
    last_ms: int
    first_lat: float
    first_lon: float
    last_lat: float
    last_lon: float
    scan_count: int
    distinct_devices: int
    first_member: bytes
    devices: tuple[bytes, ...]  # digests, the first scanner's first; at most MAX_DEVICES

    def pack(self) -> bytes:
        first_lat, first_lon = place_e7(self.first_lat, self.first_lon)
        last_lat, last_lon = place_e7(self.last_lat, self.last_lon)
        head = HEAD.pack(
            self.first_ms & _LOW_32,
            self.first_ms >> 32,
            self.last_ms & _LOW_32,
            self.last_ms >> 32,
            first_lat,
            first_lon,
            last_lat,
            last_lon,
            self.scan_count,
            self.distinct_devices,
            self.first_member,
        )
        return head + b"".join(self.devices)

    @classmethod
    def unpack(cls, record: bytes) -> ScanRecord:
        """A record as ``ScanRecord.pack`` (and scan_state.lua) packed it."""
        (
            first_low,
            first_high,
            last_low,
            last_high,
            first_lat,
            first_lon,
            last_lat,
            last_lon,
            count,
            distinct,
            member,
        ) = HEAD.unpack_from(record)
        return cls(
            first_low | first_high << 32,
            last_low | last_high << 32,
            _degrees(first_lat),
            _degrees(first_lon),
            _degrees(last_lat),
            _degrees(last_lon),
            count,
            distinct,
            member,
            tuple(
                record[at : at + DEVICE_SIZE] for at in range(HEAD.size, len(record), DEVICE_SIZE)
            ),
        )


def record_scan(
    record: ScanRecord | None, now_ms: int, lat: float, lon: float, device: bytes, member: bytes
) -> ScanRecord:
    """The record once a scan is counted (``record`` None: the code's first scan). The place is
    kept as packed, to 1e-7 degree. A device past ``MAX_DEVICES`` is not remembered and makes
    the count "more": without its slot, a device coming back could not be told from a new one.
    """
    lat_e7, lon_e7 = place_e7(lat, lon)
    lat, lon = _degrees(lat_e7), _degrees(lon_e7)
    if record is None:
        devices: tuple[bytes, ...] = () if device == NO_DEVICE else (device,)
        return ScanRecord(now_ms, now_ms, lat, lon, lat, lon, 1, len(devices), member, devices)
    devices, distinct = record.devices, record.distinct_devices
    if device != NO_DEVICE and device not in devices:
        if len(devices) < MAX_DEVICES:
            devices, distinct = (*devices, device), distinct + 1
        else:
            distinct = MAX_DEVICES + 1
    return ScanRecord(
        record.first_ms,
        now_ms,
        record.first_lat,
        record.first_lon,
        lat,
        lon,
        record.scan_count + 1,
        distinct,
        record.first_member,
        devices,
    )


def place_e7(lat: float | None, lon: float | None) -> tuple[int, int]:
    """A place as scans and records carry it: in 1e-7 degrees, ``NO_PLACE_E7`` when either
    coordinate is unknown (None or NaN)."""
    if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
        return NO_PLACE_E7
    return round(lat * 1e7), round(lon * 1e7)


def _degrees(e7: int) -> float:
    return math.nan if e7 == NO_LOCATION_E7 else e7 / 1e7

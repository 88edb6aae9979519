"""The scan record: its format, its rule, and scan_state.lua holding to both on a real Redis."""

from __future__ import annotations

import math
import re
import struct
from collections import defaultdict
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from fraud.scan_record import (
    DEVICE_SIZE,
    HEAD,
    MAX_DEVICES,
    MEMBER_SIZE,
    NO_DEVICE,
    ScanRecord,
    record_scan,
)
from fraud.velocity import NO_MEMBER
from ingest.events.partitions import Partitions
from ingest.scan.state import (
    SCAN_STATE,
    SEEN_RANGE,
    ScanState,
    decide_scans,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    read_history,
    scan_argument,
)
from ingest.store.scripts import BlockingScriptRunner

PARTITIONS = Partitions()

OWNER, OTHER = b"\x01" * DEVICE_SIZE, b"\x02" * DEVICE_SIZE
# two codes sharing a record hash, one in another hash of the partition, one in another partition
SERIALS = (3 * SEEN_RANGE + 17, 3 * SEEN_RANGE + 18, 3 * SEEN_RANGE + 200, 4 * SEEN_RANGE + 5)
DEVICES = (NO_DEVICE, *(device_digest(f"phone-{n}") for n in range(MAX_DEVICES + 2)))
MEMBERS = (NO_MEMBER, member_digest("m-1"), member_digest("m-2"))
_EVENT = struct.pack("<I", 1) + b"e"


class Scan(NamedTuple):
    serial: int
    now_ms: int
    place: tuple[float, float] | None
    device: bytes
    member: bytes


def test_the_script_repeats_the_record_constants() -> None:
    source = SCAN_STATE.source
    sizes = re.search(r"local DEVICE_SIZE, MAX_DEVICES = (\d+), (\d+)", source)
    record = re.search(r"local RECORD = '<([^']+)'", source)
    assert sizes is not None
    assert record is not None
    assert (int(sizes[1]), int(sizes[2])) == (DEVICE_SIZE, MAX_DEVICES)
    fields = re.findall(r"[A-Za-z](\d+)", record[1])
    assert sum(map(int, fields)) == HEAD.size
    assert int(fields[-1]) == MEMBER_SIZE  # the head ends with the first member's digest


def test_a_record_packs_and_unpacks_to_itself() -> None:
    devices = (OWNER, OTHER)
    record = ScanRecord(
        2**48 - 1, 2**32, 31.23, -121.47, math.nan, math.nan, 7, 5, b"m" * 8, devices
    )
    packed = record.pack()
    assert len(packed) == HEAD.size + 2 * DEVICE_SIZE == 50
    assert ScanRecord.unpack(packed).pack() == packed
    assert ScanRecord.unpack(packed)[:4] == record[:4]


def test_history_after_a_scan_counts_devices_like_the_scan_script() -> None:
    history = record_scan(None, 0, 31.23, 121.47, OWNER, NO_MEMBER)
    history = record_scan(history, 5, 1.0, 2.0, OWNER, NO_MEMBER)
    history = record_scan(history, 6, 1.0, 2.0, NO_DEVICE, NO_MEMBER)
    assert (history.scan_count, history.distinct_devices, history.devices) == (3, 1, (OWNER,))
    assert (history.first_ms, history.last_ms, history.last_lat) == (0, 6, 1.0)


def test_four_devices_are_remembered_and_then_counted_as_more() -> None:
    # the sequence of test_scan_state.test_first_scan_counts_and_distinct_devices
    record, distinct = None, []
    for name in ("a", "a", "", "b", "c", "d", "e", "e", "a", "f"):
        record = record_scan(record, 0, math.nan, math.nan, device_digest(name), NO_MEMBER)
        distinct.append(record.distinct_devices)
    assert distinct == [1, 1, 1, 2, 3, 4, 5, 5, 5, 5]
    assert record is not None
    assert record.devices == tuple(device_digest(name) for name in "abcd")


def test_the_first_scanner_and_place_stay() -> None:
    first = record_scan(None, 10, math.nan, math.nan, NO_DEVICE, b"m" * 8)
    later = record_scan(first, 5, 31.123456789, 121.0, OWNER, NO_MEMBER)
    assert (later.first_ms, later.last_ms, later.scan_count) == (10, 5, 2)
    assert (later.first_member, later.devices) == (b"m" * 8, (OWNER,))
    assert math.isnan(later.first_lat)
    assert later.last_lat == 31.1234568  # kept as packed, to 1e-7 degree


_places = st.none() | st.tuples(
    st.floats(-90.0, 90.0, allow_nan=False), st.floats(-180.0, 180.0, allow_nan=False)
)


@st.composite
def _micro_batches(draw: st.DrawFn) -> list[list[Scan]]:
    """Scans of a few codes in micro-batches, their times in clock order or in any order."""
    codes = draw(st.lists(st.sampled_from(SERIALS), min_size=1, max_size=3, unique=True))
    scans = st.builds(
        Scan,
        st.sampled_from(codes),
        st.integers(0, 2**48 - 1),
        _places,
        st.sampled_from(DEVICES),
        st.sampled_from(MEMBERS),
    )
    batches = draw(st.lists(st.lists(scans, min_size=1, max_size=6), min_size=1, max_size=8))
    if draw(st.booleans()):
        times = iter(sorted(scan.now_ms for batch in batches for scan in batch))
        batches = [[scan._replace(now_ms=next(times)) for scan in batch] for batch in batches]
    return batches


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.mark.redis
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_micro_batches())
def test_the_script_keeps_the_record_the_rule_gives(
    client: redis.Redis, batches: list[list[Scan]]
) -> None:
    client.flushall()
    runner = BlockingScriptRunner(client)
    records: dict[int, ScanRecord] = {}
    for batch in batches:
        by_partition: dict[int, list[Scan]] = defaultdict(list)
        for scan in batch:
            by_partition[partition_of_serial(scan.serial, PARTITIONS)].append(scan)
        for partition, scans in by_partition.items():
            arguments = [scan_argument(_packed(scan), "", _EVENT) for scan in scans]
            replies = runner.run(decide_scans(PARTITIONS, partition, arguments, 10**9, 60))
            for scan, reply in zip(scans, replies, strict=True):
                before = records.get(scan.serial)
                lat, lon = scan.place or (math.nan, math.nan)
                after = record_scan(before, scan.now_ms, lat, lon, scan.device, scan.member)
                records[scan.serial] = after
                state = ScanState.from_reply(reply)
                assert state == (before is None, after.scan_count, after.distinct_devices, False)
        for serial in SERIALS:
            _, key, field = read_history(serial, PARTITIONS)
            stored = client.hget(key, field)
            record = records.get(serial)
            assert stored == (None if record is None else record.pack())
            assert not isinstance(stored, bytes) or ScanRecord.unpack(stored).pack() == stored
    most_devices = max(record.distinct_devices for record in records.values())
    target(most_devices)  # towards codes past the device cap
    event(f"most devices on a code: {most_devices}")


def _packed(scan: Scan) -> bytes:
    lat, lon = scan.place or (None, None)
    return pack_scan(scan.serial, scan.now_ms, lat, lon, scan.device, scan.member)

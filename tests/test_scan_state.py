"""scan_state.lua through the same ScriptCall values the pipeline sends, on a real Redis."""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator, Sequence
from typing import cast

import pytest
from redis.asyncio import Redis

from ingest.events.partitions import Partitions
from ingest.events.scans import events_in
from ingest.scan.state import (
    SCAN_STATE,
    SEEN_RANGE,
    ScanState,
    StreamFull,
    decide_scans,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    scan_argument,
)
from ingest.store.scripts import RedisPyCommands, ScriptRunner

PARTITIONS = Partitions()

SERIAL = 3 * SEEN_RANGE + 17
Entry = tuple[bytes, dict[bytes, bytes]]
NOW = 1_800_000_000_000


def test_the_script_and_the_module_agree_on_the_bitmap_range() -> None:
    match = re.search(r"local SEEN_RANGE, RECORD_BUCKET = (\d+), (\d+)", SCAN_STATE.source)
    assert match is not None
    assert int(match[1]) == SEEN_RANGE
    assert (SEEN_RANGE // 8 + 5 + 1) <= 8192  # sdshdr16 + NUL: one 8 KiB allocation


def test_partitions_follow_bitmap_ranges_and_spread_a_batch() -> None:
    assert partition_of_serial(SERIAL, PARTITIONS) == partition_of_serial(
        3 * SEEN_RANGE, PARTITIONS
    )
    assert {
        partition_of_serial(n * SEEN_RANGE, PARTITIONS) for n in range(PARTITIONS.scans)
    } == set(range(PARTITIONS.scans))
    assert PARTITIONS.of_text("fake") == PARTITIONS.of_text("fake")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _decide(
    redis: Redis,
    scans: Sequence[tuple[bytes, str, bytes]],  # (packed scan, scan_id, event)
    serial: int = SERIAL,
    max_length: int = 1000,
) -> list[ScanState]:
    arguments = [scan_argument(scan, scan_id, _framed(event)) for scan, scan_id, event in scans]
    call = decide_scans(
        PARTITIONS, partition_of_serial(serial, PARTITIONS), arguments, max_length, 60
    )
    replies = await ScriptRunner(RedisPyCommands(redis)).run(call)
    return [ScanState.from_reply(r) for r in replies]


def _framed(event: bytes) -> bytes:
    return struct.pack("<I", len(event)) + event


def _scan(device: str = "", member: str = "", serial: int | None = SERIAL) -> bytes:
    return pack_scan(serial, NOW, 31.2, 121.4, device_digest(device), member_digest(member))


@pytest.mark.redis
async def test_first_scan_counts_and_distinct_devices(redis: Redis) -> None:
    scans = [(_scan(d), "", b"event") for d in ("a", "a", "", "b", "c", "d", "e", "e", "a")]
    states = await _decide(redis, scans)
    assert [s.first_scan for s in states] == [True] + [False] * 8
    assert [s.scan_count for s in states] == list(range(1, 10))
    # four devices are remembered and counted; 5 means "more than four", however many more
    assert [s.distinct_devices for s in states] == [1, 1, 1, 2, 3, 4, 5, 5, 5]
    tag = PARTITIONS.scan_tag(partition_of_serial(SERIAL, PARTITIONS))
    record = await redis.hget(f"{tag}:rec:{SERIAL // 128}", str(SERIAL % 128))
    assert isinstance(record, bytes)
    assert len(record) == 42 + 4 * 4
    assert struct.unpack_from("<ii", record, 12) == (312_000_000, 1_214_000_000)
    assert await redis.strlen(f"{tag}:seen:{SERIAL // SEEN_RANGE}") == SEEN_RANGE // 8
    [(_, entry)] = cast(
        list[Entry],
        await redis.xrange(PARTITIONS.stream_key(partition_of_serial(SERIAL, PARTITIONS))),
    )
    assert events_in(entry) == 9  # one entry per call
    assert await redis.get(PARTITIONS.unsunk_key(partition_of_serial(SERIAL, PARTITIONS))) == b"9"
    more = [(_scan(d), "", b"e") for d in ("f", "e", "f", "a")]
    assert {s.distinct_devices for s in await _decide(redis, more)} == {5}


@pytest.mark.redis
async def test_scans_without_a_serial_only_append_events(redis: Redis) -> None:
    [state] = await _decide(redis, [(_scan(serial=None), "", b"event")])
    assert state == ScanState(False, 0, 0, False)
    partition = partition_of_serial(SERIAL, PARTITIONS)
    assert sorted(await redis.keys("*")) == [
        PARTITIONS.stream_key(partition).encode(),
        PARTITIONS.unsunk_key(partition).encode(),
    ]


@pytest.mark.redis
async def test_a_known_scan_id_is_answered_from_memory(redis: Redis) -> None:
    first = await _decide(redis, [(_scan("a"), "id-1", b"e1"), (_scan("b"), "id-1", b"e2")])
    assert first[1] == first[0]._replace(retried=True)
    [again] = await _decide(redis, [(_scan("c"), "id-1", b"e3")])
    assert again == first[1]
    assert await redis.get(PARTITIONS.unsunk_key(partition_of_serial(SERIAL, PARTITIONS))) == b"1"
    tag = PARTITIONS.scan_tag(partition_of_serial(SERIAL, PARTITIONS))
    assert 0 < await redis.ttl(f"{tag}:sid:id-1") <= 60


@pytest.mark.redis
async def test_a_full_stream_changes_nothing(redis: Redis) -> None:
    await _decide(redis, [(_scan("a"), "", b"e")], max_length=1)
    before = {key: await redis.dump(key) for key in await redis.keys("*")}
    with pytest.raises(StreamFull):
        await _decide(redis, [(_scan("b"), "x", b"e")], max_length=1)
    after = {key: await redis.dump(key) for key in await redis.keys("*")}
    assert after == before

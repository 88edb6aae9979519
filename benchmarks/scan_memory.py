"""Redis memory of the scan state: bytes per scanned code and per issued code.

Starts its own Redis, issues ``--codes`` serials (no batch objects are needed for the state) and
scans a fraction of them through ``scan_state.lua`` exactly as the scan path does (with a
device and a member each, about a quarter of them scanned twice by a second device). The event
streams are deleted before measuring, as the sink's trim does once events are in ClickHouse;
what they held is reported per event (what a ClickHouse outage costs Redis).
Prints one JSON document. Goals (issue 3): about 100 bytes or less per scanned code, about one
bit per issued code.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from fraud.verdicts import Verdict
from ingest.events.partitions import Partitions
from ingest.events.scans import ScanEvent
from ingest.ops import local_services
from ingest.scan.state import (
    decide_scans,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    scan_argument,
)
from ingest.store.scripts import RedisPyCommands, ScriptRunner

CALL_SIZE = 8  # scans of one partition per call: a micro-batch of ~128 scans
PARTITIONS = Partitions()


def _event(serial: int, now_ms: int) -> bytes:
    """A typical event: a located genuine scan by a member's phone."""
    return ScanEvent(
        time_ms=now_ms,
        serial=serial,
        key_id=1,
        verdict=Verdict.GENUINE,
        lat=31.23,
        lon=121.47,
        accuracy_m=15.0,
        client_time_ms=now_ms - 300,
        latency_us=900,
        scan_id=f"5f3a9c0e21b4{serial:x}",
        code="0000000021H3MR4XEZX0",
        batch_id="B1PAN3909YV",
        sku="BEER-500",
        gtin="04006381333931",
        member_id="member-48213",
        device_id="c5a1f2e4-7b0d-4d52-9e1a-3f6b8c2d9a71",
        ip="203.0.113.57",
        flags=(),
    ).encode()


async def _scan(redis: Redis, serials: list[int], devices: int, now_ms: int) -> None:
    runner = ScriptRunner(RedisPyCommands(redis))
    by_partition: dict[int, list[bytes]] = {}
    for serial in serials:
        device = device_digest(f"device-{devices}-{serial}")
        packed = pack_scan(serial, now_ms, 31.23, 121.47, device, member_digest("m"))
        argument = scan_argument(packed, "", _event(serial, now_ms))
        by_partition.setdefault(partition_of_serial(serial, PARTITIONS), []).append(argument)
    calls = [
        decide_scans(PARTITIONS, partition, scans[i : i + CALL_SIZE], 10**9, 86_400)
        for partition, scans in by_partition.items()
        for i in range(0, len(scans), CALL_SIZE)
    ]
    for i in range(0, len(calls), 256):
        await runner.run_many(calls[i : i + 256])


async def _used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def measure(redis_url: str, issued: int, scanned_fraction: float) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushall()
        before = await _used_memory(redis)
        rng = random.Random(7)
        first_serial = 1_000_000
        scanned = sorted(rng.sample(range(issued), int(issued * scanned_fraction)))
        serials = [first_serial + s for s in scanned]
        await _scan(redis, serials, 1, 1_800_000_000_000)
        await _scan(redis, serials[::4], 2, 1_800_000_100_000)
        with_streams = await _used_memory(redis)
        await redis.delete(*PARTITIONS.stream_keys)
        after = await _used_memory(redis)
        events = len(serials) + len(serials[::4])
        seen_bytes = rec_bytes = 0
        async for key in redis.scan_iter(match="{scans:*}:*", count=1000):
            usage = int(await redis.memory_usage(key) or 0)
            if b":seen:" in key:
                seen_bytes += usage
            else:
                rec_bytes += usage
        return {
            "issued_codes": issued,
            "scanned_codes": len(serials),
            "scanned_fraction": scanned_fraction,
            "used_memory_delta_bytes": after - before,
            "bytes_per_scanned_code": round((after - before) / len(serials), 1),
            "record_bytes_per_scanned_code": round(rec_bytes / len(serials), 1),
            "bitmap_bits_per_issued_code": round(seen_bytes * 8 / issued, 3),
            "stream_bytes_per_unsunk_event": round((with_streams - after) / events, 1),
        }
    finally:
        await redis.aclose()


def run(issued_counts: Sequence[int], fractions: Sequence[float]) -> list[dict[str, Any]]:
    """``measure`` for every issued count and scanned fraction, on a Redis of its own."""
    with tempfile.TemporaryDirectory(prefix="scanward-memory-") as folder:
        server = local_services.start_redis(Path(folder))
        try:
            return [
                asyncio.run(measure(server.url, issued, fraction))
                for issued in issued_counts
                for fraction in fractions
            ]
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000, help="issued codes")
    parser.add_argument("--fractions", default="0.05,0.3", help="scanned fractions to measure")
    args = parser.parse_args(argv)
    results = run([args.codes], [float(f) for f in args.fractions.split(",")])
    document = {"benchmark": "scan_state_memory", "results": results}
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()

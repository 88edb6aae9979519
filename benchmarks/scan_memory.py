"""Redis memory of the scan state: bytes per scanned code and per issued code, and bytes per
request of the costliest requests an anonymous client can send.

Starts its own Redis, issues ``--codes`` serials (no batch objects are needed for the state) and
scans a fraction of them through ``scan_state.lua`` exactly as the scan path does (with a
device and a member each, about a quarter of them scanned twice by a second device). The event
streams are deleted before measuring, as the sink's trim does once events are in ClickHouse;
what they held is reported per event (what a ClickHouse outage costs Redis).
Goals (issue 3): about 100 bytes or less per scanned code, about one bit per issued code.

Then ``--requests`` anonymous scans of each kind go through the real app (``POST /v1/scans``
with a fresh ``scan_id``, device id and member id each: a valid code with and without a
location, an invalid code), from addresses that stay under the fraud policy's limits, and the
keys they left are measured with ``MEMORY USAGE`` by family (streams deleted, as the sink trims
them). The ceiling per address per day is the costliest kind's bytes per request times the
scans an address may send in a UTC day (``address_max_scans_per_day``).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from codes.keyring import Keyring
from fraud.policy import FraudPolicy
from fraud.verdicts import Verdict
from ingest.config import Settings
from ingest.events.partitions import Partitions
from ingest.events.scans import ScanEvent
from ingest.http.app import create_app
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
POLICY = FraudPolicy()
PER_ADDRESS = 250  # requests sent from one address: under every limit of the default policy
IN_FLIGHT = 32
KEY_FAMILIES = (":sid:", ":dev:", ":ip:", ":rec:", ":seen:")


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


def _anonymous_scan(kind: str, number: int, code: str) -> dict[str, object]:
    """The costliest body of its kind: every id fresh, as an attacker would send it."""
    body: dict[str, object] = {
        "code": code,
        "scan_id": f"{kind}-{number:08d}-{secrets.token_hex(8)}",
        "device_id": f"device-{kind}-{number:08d}-{secrets.token_hex(8)}",
        "member_id": f"member-{kind}-{number:08d}-{secrets.token_hex(8)}",
    }
    if kind == "valid_located":
        body |= {"lat": 31.2304 + number * 1e-6, "lon": 121.4737, "accuracy_m": 15}
    return body


async def _key_bytes(redis: Redis) -> Counter[str]:
    """``MEMORY USAGE`` of every key, summed by family (the part of its name after the tag)."""
    sizes: Counter[str] = Counter()
    async for key in redis.scan_iter(count=1000):
        name = key.decode()
        family = next((f.strip(":") for f in KEY_FAMILIES if f in name), "other")
        sizes[family] += int(await redis.memory_usage(key, samples=0) or 0)
    return sizes


async def _send(
    client: TestClient[Any, Any], kind_number: int, bodies: list[dict[str, object]]
) -> Counter[int]:
    """The scans, ``IN_FLIGHT`` at a time, ``PER_ADDRESS`` from each address; their statuses."""
    statuses: Counter[int] = Counter()
    for start in range(0, len(bodies), IN_FLIGHT):
        replies = await asyncio.gather(
            *(
                client.post(
                    "/v1/scans",
                    json=body,
                    headers={"X-Forwarded-For": f"198.18.{kind_number}.{at // PER_ADDRESS}"},
                )
                for at, body in enumerate(bodies[start : start + IN_FLIGHT], start)
            )
        )
        statuses.update(reply.status for reply in replies)
    return statuses


async def measure_requests(redis_url: str, folder: Path, requests: int) -> dict[str, Any]:
    """Bytes per request that anonymous scans of each kind leave in Redis, by key family."""
    keyring_path = folder / "keyring.bin"
    Keyring.new().save(keyring_path, "memory benchmark keyring")
    token = secrets.token_urlsafe(24)
    settings = Settings(
        data_dir=folder,
        redis_url=redis_url,
        admin_token=token,
        keyring_secret="memory benchmark keyring",
        keyring_path=keyring_path,
        trusted_proxies=("127.0.0.1",),
        fraud_policy=POLICY,
        max_batch_quantity=10**7,
    )
    admin = {"Authorization": f"Bearer {token}"}
    redis = Redis.from_url(redis_url)
    kinds = ("valid_located", "valid_no_location", "invalid")
    figures: dict[str, Any] = {}
    try:
        async with TestClient(TestServer(create_app(settings))) as client:
            order = {"sku": "BEER-500", "gtin": "4006381333931", "line_id": "L1"}
            reply = await client.post(
                "/v1/batches", json={**order, "quantity": 2 * requests}, headers=admin
            )
            batch = await reply.json()
            reply = await client.get(
                f"/v1/batches/{batch['batch_id']}/codes?limit={2 * requests}", headers=admin
            )
            codes = iter((await reply.text()).split())
            for number, kind in enumerate(kinds):
                await redis.delete(*PARTITIONS.stream_keys)
                before, used_before = await _key_bytes(redis), await _used_memory(redis)
                bodies = [
                    _anonymous_scan(kind, n, "0" * 20 if kind == "invalid" else next(codes))
                    for n in range(requests)
                ]
                statuses = await _send(client, number, bodies)
                await redis.delete(*PARTITIONS.stream_keys)
                grown, used = await _key_bytes(redis), await _used_memory(redis)
                grown.subtract(before)
                per_family = {
                    family: round(size / requests, 1)
                    for family, size in sorted(grown.items())
                    if size
                }
                # the code's own record and bitmap are bounded by the codes issued, not by clients
                per_client = sum(v for f, v in per_family.items() if f not in ("rec", "seen"))
                figures[kind] = {
                    "requests": requests,
                    "statuses": {str(k): v for k, v in statuses.items()},
                    "bytes_per_request_by_family": per_family,
                    "bytes_per_request": round(sum(per_family.values()), 1),
                    "bytes_per_request_client_bounded": round(per_client, 1),
                    # what Redis' allocator took: the keys, their expiry entries and tables
                    "used_memory_per_request": round((used - used_before) / requests, 1),
                }
    finally:
        await redis.aclose()
    # the allocator's figure includes the codes' records and bitmaps too: an upper bound
    worst = max(f["used_memory_per_request"] for f in figures.values())
    return {
        "requests": figures,
        "address_max_scans_per_day": POLICY.address_max_scans_per_day,
        "worst_used_memory_per_request": worst,
        "ceiling_per_address_per_day_bytes": round(worst * POLICY.address_max_scans_per_day),
    }


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


def run_anonymous(requests: int) -> dict[str, Any]:
    """``measure_requests`` on a Redis of its own."""
    with tempfile.TemporaryDirectory(prefix="scanward-memory-") as folder:
        server = local_services.start_redis(Path(folder))
        try:
            return asyncio.run(measure_requests(server.url, Path(folder), requests))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000, help="issued codes")
    parser.add_argument("--fractions", default="0.05,0.3", help="scanned fractions to measure")
    parser.add_argument(
        "--requests", type=int, default=2_000, help="anonymous scans of each kind (0: none)"
    )
    args = parser.parse_args(argv)
    results = run([args.codes], [float(f) for f in args.fractions.split(",")])
    anonymous = run_anonymous(args.requests) if args.requests else None
    document = {"benchmark": "scan_state_memory", "results": results, "anonymous": anonymous}
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()

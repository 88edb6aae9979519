"""A private scanward stack for benchmarks, started and stopped by PID.

Redis (one node, or with ``local_redis`` a cluster of primaries) and ClickHouse on free loopback
ports, a keyring, one batch of codes (shipped, when asked, to the distributor whose square
territory on a grid over eastern China holds the load's phones), members with tiers, and the
file of codes the load scans. ``process`` runs a scanward command (the API, the sink) for the
length of a ``with`` block.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from benchmarks import campaign_bench
from codes.batches import Batch, BatchOrder
from codes.keyring import Keyring
from fraud import shipments
from fraud.distributors import Distributor
from fraud.shipments import SerialRange
from ingest.events.partitions import Partitions
from ingest.ops import local_services
from ingest.ops.server import wait_until_serving
from ingest.sink.streams import STATS_KEY
from ingest.store import connect
from ingest.store.batches import BatchStore
from ingest.store.scripts import AsyncRedis, RedisPyCommands, ScriptRunner, SyncRedis

SECRET = "bench keyring secret"
SHANGHAI = (31.3, 121.5)  # where the load puts its phones (scan_load.lua, open_loop)
SKU = "BENCH"
_STOP_TIMEOUT_S = 30
DRAIN_LIMIT_S = 60
WARM_UP_S = 2
"""Seconds of load before a measured one: the API's copies read, a campaign's codes drawn."""


@dataclass(frozen=True, slots=True)
class BenchStack:
    data: Path
    redis_url: str
    clickhouse_url: str
    clickhouse_pid: int
    port: int
    codes_file: Path
    tiers: dict[int, int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the stack's scanward processes and of ``scan_load.lua``."""
        return {
            "SCANWARD_DATA_DIR": str(self.data),
            "SCANWARD_KEYRING_SECRET": SECRET,
            "SCANWARD_REDIS_URL": self.redis_url,
            "SCANWARD_CLICKHOUSE_URL": self.clickhouse_url,
            "SCANWARD_PORT": str(self.port),
            "SCANWARD_TRUSTED_PROXIES": "127.0.0.1",
            "SCANWARD_ADMIN_TOKEN": campaign_bench.ADMIN_TOKEN,
            "SCAN_CODES": str(self.codes_file),
            "SCAN_MEMBERS": str(sum(self.tiers.values())),
        }


@contextmanager
def local_stack(codes: int, sample: int, territories: int, members: int) -> Iterator[BenchStack]:
    """Servers in a temporary folder with ``codes`` issued, the first ``sample`` of them in the
    codes file, ``territories`` distributors (0: the codes stay unshipped) and ``members``
    member ids ``m-1 .. m-<members>``, a share of them with a tier. ClickHouse is migrated."""
    with tempfile.TemporaryDirectory(prefix="scanward-bench-") as folder, ExitStack() as servers:
        data = Path(folder)
        redis_server = servers.enter_context(local_redis(data / "redis"))
        clickhouse = local_services.start_clickhouse(data / "clickhouse")
        servers.callback(clickhouse.stop)
        size = (codes, sample, territories, members)
        yield populate(data, redis_server.url, clickhouse.url, clickhouse.pid, *size)


@dataclass(frozen=True, slots=True)
class LocalRedis:
    """A private Redis the benchmark started: one node, or a cluster of primaries only."""

    url: str
    """One node's URL, or every node's, comma-separated (what ``SCANWARD_REDIS_URL`` takes)."""
    primaries: tuple[Primary, ...]
    """By first slot (the one node alone when not a cluster)."""


@dataclass(frozen=True, slots=True)
class Primary:
    """A redis-server holding slots: its CPU is read from ``/proc`` by its PID."""

    address: str
    """``host:port``, naming it in results."""
    url: str
    """With its password, for a client of its own."""
    pid: int
    slots: str
    """Its slot ranges, ``0-5460``; ``all`` on one node."""


@contextmanager
def local_redis(data: Path, masters: int = 1) -> Iterator[LocalRedis]:
    """One redis-server under ``data`` or, with ``masters`` of 3 or more, a Redis Cluster of
    that many primaries and no replicas; stopped by PID when the block ends."""
    if masters == 1:
        node = local_services.start_redis(data)
        try:
            address = urlsplit(node.url).netloc.rpartition("@")[2]
            yield LocalRedis(node.url, (Primary(address, node.url, node.pid, "all"),))
        finally:
            node.stop()
        return
    cluster = local_services.start_redis_cluster(data, masters, replicas=0)
    try:
        yield LocalRedis(cluster.url, _primaries(cluster))
    finally:
        cluster.stop()


def _primaries(cluster: local_services.RedisClusterServers) -> tuple[Primary, ...]:
    """The cluster's primaries by first slot, from ``CLUSTER SLOTS`` of one of them."""
    with redis.Redis.from_url(cluster.nodes[0].url) as client:
        slot_map = cast(list[list[Any]], client.execute_command("CLUSTER SLOTS"))
    ranges: dict[int, list[str]] = {}
    for start, end, (_host, port, *_), *_replicas in sorted(slot_map):
        ranges.setdefault(port, []).append(f"{start}-{end}")
    primaries = []
    for port, slots in ranges.items():
        url = cluster.url_at(port)
        primaries.append(Primary(f"127.0.0.1:{port}", url, cluster.node(url).pid, ",".join(slots)))
    return tuple(primaries)


def populate(
    data: Path,
    redis_url: str,
    clickhouse_url: str,
    clickhouse_pid: int,
    codes: int,
    sample: int,
    territories: int,
    members: int,
) -> BenchStack:
    """``local_stack``'s state on servers already running: written into the Redis at
    ``redis_url`` (a node or a cluster), the ClickHouse database of ``clickhouse_url`` migrated,
    the keyring and the codes file in ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    keyring = Keyring.new()
    keyring.save(data / "keyring.bin", SECRET)
    scanned = asyncio.run(_order_codes(redis_url, keyring, codes, sample, territories))
    (data / "codes.txt").write_bytes(scanned)
    with connect.sync_client(redis_url) as client:
        # give_tiers pipelines HSETs, which a cluster's client routes by key as one node's runs
        given = campaign_bench.give_tiers(cast(redis.Redis, client), members)
    tiers = {0: members - sum(given.values()), **given}
    stack = BenchStack(
        data,
        redis_url,
        clickhouse_url,
        clickhouse_pid,
        local_services.free_port(),
        data / "codes.txt",
        tiers,
    )
    run_scanward(stack.env, "migrate")
    return stack


@contextmanager
def process(command: list[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, its output appended to ``processes.log`` in the data folder."""
    log = (Path(env["SCANWARD_DATA_DIR"]) / "processes.log").open("ab")
    child = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def scanward(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


def run_scanward(env: Mapping[str, str], *args: str) -> None:
    subprocess.run(scanward(*args), env={**os.environ, **env}, check=True, capture_output=True)


def drain_streams(client: SyncRedis) -> dict[str, Any]:
    """Waits (at most ``DRAIN_LIMIT_S``) for the sink to empty the scan streams; the backlog
    found, the lag of the sink's last insert (its oldest row's age when ClickHouse took it) and
    the seconds the streams took to empty."""
    backlog = _stream_length(client)
    lag_ms = int(cast(bytes | None, client.hget(STATS_KEY, "lag_ms")) or 0)
    started = time.monotonic()
    while _stream_length(client) > 0 and time.monotonic() - started < DRAIN_LIMIT_S:
        time.sleep(0.1)
    drain_s = round(time.monotonic() - started, 2)
    return {"backlog_events": backlog, "last_insert_lag_ms": lag_ms, "drain_s": drain_s}


def _stream_length(client: SyncRedis) -> int:
    return sum(int(client.xlen(key)) for key in Partitions().stream_keys)


def wait_healthy(url: str) -> None:
    if not wait_until_serving(url, 20.0):
        raise RuntimeError(f"{url} did not become healthy")


async def _order_codes(
    redis_url: str, keyring: Keyring, quantity: int, sample: int, territories: int
) -> bytes:
    client = connect.async_client(redis_url)
    try:
        order = BatchOrder.create(SKU, "4006381333931", quantity, max_quantity=quantity)
        batch = await BatchStore(client).create(order, keyring.current.key_id)
        if territories:
            await _ship_to_territories(client, batch, territories)
    finally:
        await client.aclose()
    blob = keyring.signer(batch.key_id, batch.batch_id).sign_range(batch.first_serial, sample)
    return b"\n".join(blob[i : i + 20] for i in range(0, len(blob), 20)) + b"\n"


async def _ship_to_territories(client: AsyncRedis, batch: Batch, count: int) -> None:
    """``count`` distributors with square territories tiling a grid over eastern China; the
    batch is shipped to the one around Shanghai, where the load's phones are."""
    scripts = ScriptRunner(RedisPyCommands(client))
    side = math.ceil(math.sqrt(count))
    cell = 0.5  # degrees
    # the cell around Shanghai spans 31.05-31.55 N, 121.25-121.75 E: all of the load's phones
    west, south = 121.25 - cell * (side // 2), 31.05 - cell * (side // 2)
    home = ""
    for number in range(count):
        lon, lat = west + cell * (number % side), south + cell * (number // side)
        ring = [[lon, lat], [lon + cell, lat], [lon + cell, lat + cell], [lon, lat + cell]]
        territory = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
        distributor = Distributor.create(f"D{number}", f"Distributor {number}", territory, 0)
        await scripts.run(distributor.put())
        if lon <= SHANGHAI[1] < lon + cell and lat <= SHANGHAI[0] < lat + cell:
            home = distributor.distributor_id
    whole_batch = SerialRange(batch.first_serial, batch.last_serial, expand=False)
    await scripts.run(shipments.ship(home, "S-BENCH", 0, [whole_batch]))

"""The scan path under load, against a hello-world aiohttp ceiling measured in the same run.

Starts its own Redis and ClickHouse on free loopback ports, orders a batch, then with ``wrk``
(Debian package ``wrk``) on the same machine and the same worker count:

1. the ceiling: ``benchmarks.hello_server`` answering the same JSON POST with no work;
2. the scan path at peak (``scanward serve --workers N``, with ``scanward sink`` running);
3. the scan path paced at half of that peak, for its latency.

Prints one JSON document and saves it under ``benchmarks/results/``. Goals (issue 3): scans/s
at least 0.6 of the ceiling's requests/s per process, p99 <= 10 ms at half of peak, sink lag
bounded at peak. wrk is closed-loop even when paced, so the half-load latency excludes the
queueing an open-loop client would see; ``ceiling_ratio`` compares like with like.

Every scan carries a member id from a pool of ``--members`` (a share of them with a tier).
``--campaign`` opens one prize campaign over the benchmark's SKU first (``benchmarks.
campaign_bench``), so genuine first scans of codes draw (genuine: shipped, so with
``--territories``); the report then counts the draws and prizes given out at peak. Redis's
per-command statistics at peak are reported either way.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import orjson
import redis

from benchmarks import campaign_bench
from benchmarks.report import provenance, publish
from codes.batches import Batch, BatchOrder
from codes.keyring import Keyring
from fraud import shipments
from fraud.distributors import Distributor
from fraud.shipments import SerialRange
from ingest import local_services
from ingest.batch_store import BatchStore
from ingest.redis_scripts import RedisPyCommands, ScriptRunner
from ingest.scan_events import STREAM_KEYS
from ingest.server import wait_until_serving
from ingest.sink_streams import STATS_KEY

SECRET = "bench keyring secret"
LOAD_SCRIPT = Path(__file__).with_name("scan_load.lua")
SHANGHAI = (31.3, 121.5)  # where scan_load.lua puts its phones
SKU = "BENCH"


def _wrk(url: str, env: Mapping[str, str], duration_s: int, connections: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed: run 'sudo apt-get install wrk'")
    command = [wrk, "-t2", f"-c{connections}", f"-d{duration_s}s", "-s", str(LOAD_SCRIPT), url]
    env = {**os.environ, **env, "SCAN_CONNECTIONS": str(connections)}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK_JSON "))
    result: dict[str, Any] = orjson.loads(line.removeprefix("WRK_JSON "))
    result["per_s"] = round(result["requests"] / result["seconds"])
    return result


def _wait_healthy(url: str) -> None:
    if not wait_until_serving(url, 20.0):
        raise RuntimeError(f"{url} did not become healthy")


@contextmanager
def _process(command: list[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, its output appended to ``processes.log`` in the data folder."""
    log = (Path(env["SCANWARD_DATA_DIR"]) / "processes.log").open("ab")
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _scanward(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", *args]


async def _order_codes(
    redis_url: str, keyring: Keyring, quantity: int, sample: int, territories: int
) -> bytes:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        order = BatchOrder.create(SKU, "4006381333931", quantity, max_quantity=quantity)
        batch = await BatchStore(client).create(order, keyring.current.key_id)
        if territories:
            await _ship_to_territories(client, batch, territories)
    finally:
        await client.aclose()
    blob = keyring.signer(batch.key_id, batch.batch_id).sign_range(batch.first_serial, sample)
    return b"\n".join(blob[i : i + 20] for i in range(0, len(blob), 20)) + b"\n"


async def _ship_to_territories(client: redis.asyncio.Redis, batch: Batch, count: int) -> None:
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


def _stream_length(client: redis.Redis) -> int:
    return sum(int(client.xlen(key)) for key in STREAM_KEYS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="scanward-bench-") as folder:
        data = Path(folder)
        redis_server = local_services.start_redis(data / "redis")
        clickhouse = local_services.start_clickhouse(data / "clickhouse")
        try:
            keyring = Keyring.new()
            keyring.save(data / "keyring.bin", SECRET)
            codes = asyncio.run(
                _order_codes(redis_server.url, keyring, args.codes, args.sample, args.territories)
            )
            (data / "codes.txt").write_bytes(codes)
            with redis.Redis.from_url(redis_server.url) as client:
                tiers = campaign_bench.give_tiers(client, args.members)
            port = local_services.free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                "SCANWARD_DATA_DIR": str(data),
                "SCANWARD_KEYRING_SECRET": SECRET,
                "SCANWARD_REDIS_URL": redis_server.url,
                "SCANWARD_CLICKHOUSE_URL": clickhouse.url,
                "SCANWARD_PORT": str(port),
                "SCANWARD_TRUSTED_PROXIES": "127.0.0.1",
                "SCANWARD_ADMIN_TOKEN": campaign_bench.ADMIN_TOKEN,
                "SCAN_CODES": str(data / "codes.txt"),
                "SCAN_MEMBERS": str(args.members),
            }
            result = _measure(args, url, port, env, clickhouse.pid)
            result["members"] = {
                "pool": args.members,
                "by_tier": {str(t): n for t, n in tiers.items()},
            }
            return result
        finally:
            clickhouse.stop()
            redis_server.stop()


def _measure(
    args: argparse.Namespace, url: str, port: int, env: dict[str, str], clickhouse_pid: int
) -> dict[str, Any]:
    workers, seconds, connections = args.workers, args.duration, args.connections
    hello = [sys.executable, "-m", "benchmarks.hello_server", str(port)]
    with _process(hello, env), _process(hello, env) if workers > 1 else _nothing():
        _wait_healthy(url)
        _wrk(url, env, 2, connections)  # warm-up
        ceiling = _wrk(url, env, seconds, connections)
    subprocess.run(_scanward("migrate"), env={**os.environ, **env}, check=True, capture_output=True)
    serve = _scanward("serve", "--workers", str(workers))
    campaign: dict[str, Any] | None = None
    with _process(_scanward("sink"), env) as sinking, _process(serve, env) as api:
        _wait_healthy(url)
        if args.campaign:
            version = campaign_bench.put_campaign(url, SKU)["version"]
            campaign = {"id": campaign_bench.CAMPAIGN_ID, "version": version}
        _wrk(url, env, 2, connections)  # warm-up (with a campaign: its codes draw once)
        client = redis.Redis.from_url(env["SCANWARD_REDIS_URL"])
        drawn_before = campaign_bench.counters(client)
        commands_before = _command_stats(client)
        batches_before = _batch_sizes(url)
        pids = {"api": api.pid, "sink": sinking.pid, "clickhouse": clickhouse_pid}
        cpu_before = _cpu_seconds(pids, client)
        peak = _wrk(url, env, seconds, connections)
        cpu_after = _cpu_seconds(pids, client)
        batches_after = _batch_sizes(url)
        commands_at_peak = _command_stats(client, commands_before, peak["requests"])
        drawn_at_peak = campaign_bench.between(drawn_before, campaign_bench.counters(client))
        backlog_at_end = _stream_length(client)
        drained = time.monotonic()
        while _stream_length(client) > 0 and time.monotonic() - drained < 60:
            time.sleep(0.1)
        drain_s = time.monotonic() - drained
        stats = cast(dict[bytes, bytes], client.hgetall(STATS_KEY))
        sink = {name.decode(): float(value) for name, value in stats.items()}
        half_rate = peak["per_s"] // 2
        half = _wrk(url, {**env, "SCAN_RATE": str(half_rate)}, seconds, connections)
        if campaign is not None:
            shown = campaign_bench.show_campaign(url)
            campaign.update(
                peak={
                    **drawn_at_peak,
                    "draws_per_scan": round(drawn_at_peak["draws"] / peak["requests"], 3),
                },
                whole_run={
                    "draws": campaign_bench.counters(client)["draws"],
                    "budgets": shown["budgets"],
                },
            )
    return {
        "benchmark": "scan_path",
        **provenance(),
        "workers": workers,
        "territories": args.territories,
        "campaign": campaign,
        "connections": connections,
        "duration_s": seconds,
        "ceiling": ceiling,
        "peak": peak,
        "half_load": {**half, "target_per_s": half_rate},
        "ceiling_ratio": round(peak["per_s"] / ceiling["per_s"], 3),
        # CPU per scan at peak: steadier than rates when other work shares the machine
        "cpu_us_per_scan": {
            name: round((cpu_after[name] - cpu_before[name]) / peak["requests"] * 1e6, 1)
            for name in cpu_before
        },
        # one worker's (the one that answered /metrics): all of them when there is one
        "mean_batch_at_peak": round(
            (batches_after[0] - batches_before[0]) / max(1, batches_after[1] - batches_before[1]),
            1,
        ),
        "redis_commands_at_peak": commands_at_peak,
        "sink": {
            "stats": sink,
            "backlog_at_end_of_peak": backlog_at_end,
            "drain_after_peak_s": round(drain_s, 2),
        },
        "goals": {
            "ceiling_ratio_min": 0.6,
            "half_load_p99_ms_max": 10,
            "ceiling_ratio_met": peak["per_s"] / ceiling["per_s"] >= 0.6,
            "half_load_p99_met": half["p99_ms"] <= 10,
        },
    }


def _command_stats(
    client: redis.Redis, before: dict[str, Any] | None = None, scans: int = 1
) -> dict[str, Any]:
    """Redis's ``INFO commandstats`` (calls and µs by command, those run by scripts included);
    given the figures ``before`` and the scans made since, what each command cost per call
    and per scan in between."""
    stats = {
        name.removeprefix("cmdstat_"): (int(row["calls"]), int(row["usec"]))
        for name, row in cast(dict[str, dict[str, Any]], client.info("commandstats")).items()
    }
    if before is None:
        return stats
    spent: dict[str, Any] = {}
    for name, (calls, usec) in stats.items():
        calls_before, usec_before = before.get(name, (0, 0))
        if calls > calls_before:
            calls, usec = calls - calls_before, usec - usec_before
            spent[name] = {
                "calls": calls,
                "usec_per_call": round(usec / calls, 2),
                "usec_per_scan": round(usec / scans, 2),
            }
    return dict(sorted(spent.items(), key=lambda item: -item[1]["usec_per_scan"]))


def _batch_sizes(url: str) -> tuple[float, float]:
    """Scans decided and micro-batches so far, from the API's ``/metrics``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = dict.fromkeys(("sum", "count"), 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for part in found:
            if name == f"scanward_scan_batch_size_{part}":
                found[part] = float(value)
    return found["sum"], found["count"]


def _cpu_seconds(pids: Mapping[str, int], client: redis.Redis) -> dict[str, float]:
    """CPU seconds used so far by the API (its process and its workers), by Redis, and by the
    other processes of ``pids`` (the sink, ClickHouse: they share the machine)."""
    redis_cpu = cast(dict[str, float], client.info("cpu"))
    used = {
        name: sum(_process_cpu_seconds(child) for child in _process_tree(pid))
        for name, pid in pids.items()
    }
    return {
        "api": used.pop("api"),
        "redis": redis_cpu["used_cpu_user"] + redis_cpu["used_cpu_sys"],
        **used,
    }


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return sorted(tree)


def _process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, choices=[1, 2])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes issued")
    parser.add_argument("--sample", type=int, default=200_000, help="codes scanned from")
    parser.add_argument(
        "--territories",
        type=int,
        default=0,
        help="distributors with territories to load; the codes are then shipped (0: unshipped)",
    )
    parser.add_argument(
        "--members", type=int, default=100_000, help="member ids the scans come from"
    )


def publish_run(result: dict[str, Any], args: argparse.Namespace) -> None:
    variant = "-campaign" if args.campaign else ""
    name = f"scan-{time.strftime('%Y%m%d-%H%M%S')}-w{args.workers}-t{args.territories}{variant}"
    publish(result, name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument(
        "--campaign",
        action="store_true",
        help="open one prize campaign (5 prizes) over the scanned codes first",
    )
    args = parser.parse_args(argv)
    if args.campaign and not args.territories:
        parser.error(
            "--campaign needs --territories N: unshipped codes are suspicious, never drawn"
        )
    publish_run(run(args), args)


if __name__ == "__main__":
    main()

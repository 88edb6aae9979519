"""The scan path on one Redis node and on a local Redis Cluster, in one run (``scanward bench
--cluster-masters N``).

On a machine of two cores more Redis processes are not faster, so the figure that matters is not
throughput but the Redis CPU a scan costs: summed over the cluster's primaries it should be the
single node's plus a small overhead (goal: at most ``REDIS_CPU_RATIO_GOAL`` times), so that with
a core per primary the throughput grows with the primaries.

Both topologies get the state of the suite's stack (``stack.populate``: the codes shipped to a
grid of territories, members with tiers, and, with ``campaign``, one open prize campaign), an API
of ``workers`` processes and a sink, each into a database of its own on one ClickHouse. They are
loaded in turn with wrk at peak as the suite's scan path is, in pairs whose order alternates
(single, cluster, then cluster, single, ...) so that the machine's drift falls on both; each
pair's ratio compares two runs minutes apart at most, and the headline is their median. Every
primary's CPU time is read from ``/proc`` by its PID around each run; after a run the sink
empties the streams, so the next starts quiet.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from benchmarks import campaign_bench
from benchmarks.process_cpu import processes_cpu_seconds, us_per_event
from benchmarks.progress import Progress
from benchmarks.stack import (
    SKU,
    WARM_UP_S,
    BenchStack,
    LocalRedis,
    drain_streams,
    local_redis,
    populate,
    process,
    scanward,
    wait_healthy,
)
from benchmarks.wrk import run_wrk
from ingest.ops import local_services
from ingest.store import connect
from ingest.store.scripts import SyncRedis
from ingest.warehouse import connect as clickhouse_client

REDIS_CPU_RATIO_GOAL = 1.15
TOPOLOGIES = ("single", "cluster")


@dataclass(frozen=True, slots=True)
class TopologyPlan:
    """What the topologies run: the cluster's size, the pairs, the load and the stack's size."""

    masters: int
    pairs: int
    workers: int
    duration_s: int
    connections: int
    codes: int
    territories: int
    members: int
    campaign: bool


@dataclass(frozen=True, slots=True)
class _Topology:
    """One topology's stack with its API and sink running."""

    stack: BenchStack
    redis: LocalRedis
    processes: dict[str, int]
    """The API's and the sink's PIDs."""
    client: SyncRedis


def run(plan: TopologyPlan, progress: Progress) -> dict[str, Any]:
    """The ``topologies`` section of the suite's result: every run of every pair, the ratios
    of each pair and their medians."""
    pairs = []
    with _topologies(plan, progress) as topologies:
        for name, topology in topologies.items():
            with progress.phase(f"topologies, {name}: warm-up", WARM_UP_S):
                run_wrk(topology.stack.url, topology.stack.env, WARM_UP_S, plan.connections)
                drain_streams(topology.client)
        for number in range(plan.pairs):
            order = TOPOLOGIES if number % 2 == 0 else TOPOLOGIES[::-1]
            runs = {}
            for name in order:
                phase = f"topologies, pair {number + 1} of {plan.pairs}: {name}"
                with progress.phase(phase, plan.duration_s):
                    runs[name] = _load(topologies[name], plan)
            pairs.append(_pair(order, runs))
        nodes = {name: _nodes(topology.redis) for name, topology in topologies.items()}
    return {
        "masters": plan.masters,
        "workers": plan.workers,
        "connections": plan.connections,
        "duration_s": plan.duration_s,
        "nodes": nodes,
        "pairs": pairs,
        "median": {name: _medians([pair[name] for pair in pairs]) for name in TOPOLOGIES},
        "redis_cpu_ratio": median_of([pair["redis_cpu_ratio"] for pair in pairs]),
        "throughput_ratio": median_of([pair["throughput_ratio"] for pair in pairs]),
    }


@contextmanager
def _topologies(plan: TopologyPlan, progress: Progress) -> Iterator[dict[str, _Topology]]:
    """Both stacks in one temporary folder, their servers and processes stopped by PID when
    the block ends."""
    size = (plan.codes, plan.codes, plan.territories, plan.members)
    with (
        tempfile.TemporaryDirectory(prefix="scanward-topologies-") as folder,
        ExitStack() as running,
    ):
        data = Path(folder)
        clickhouse = local_services.start_clickhouse(data / "clickhouse")
        running.callback(clickhouse.stop)
        topologies = {}
        for name, masters in zip(TOPOLOGIES, (1, plan.masters), strict=True):
            shape = "one node" if masters == 1 else f"a cluster of {masters} masters"
            with progress.phase(f"topologies, {name}: {shape}, {plan.codes:,} codes"):
                servers = running.enter_context(local_redis(data / name / "redis", masters))
                database = _database(clickhouse.url, f"bench_{name}")
                stack = populate(data / name, servers.url, database, clickhouse.pid, *size)
                sink = running.enter_context(process(scanward("sink"), stack.env))
                serve = scanward("serve", "--workers", str(plan.workers))
                api = running.enter_context(process(serve, stack.env))
                wait_healthy(stack.url)
                if plan.campaign:
                    campaign_bench.put_campaign(stack.url, SKU)
                client = running.enter_context(connect.sync_client(stack.redis_url))
                pids = {"api": api.pid, "sink": sink.pid}
                topologies[name] = _Topology(stack, servers, pids, client)
        yield topologies


def _database(clickhouse_url: str, name: str) -> str:
    """The URL of a new database ``name`` on the server of ``clickhouse_url``: each topology's
    sink writes its own ``scans``, so the two never meet in one table."""
    client = clickhouse_client(clickhouse_url)
    try:
        client.execute(f"CREATE DATABASE {name}")
    finally:
        client.disconnect()
    return urlsplit(clickhouse_url)._replace(path=f"/{name}").geturl()


def _load(topology: _Topology, plan: TopologyPlan) -> dict[str, Any]:
    """One run at peak: its load, and CPU µs per answered scan of each primary (by address),
    of them all, of the API and of the sink."""
    primaries = {primary.address: primary.pid for primary in topology.redis.primaries}
    pids = {**primaries, **topology.processes}
    stack = topology.stack
    before = processes_cpu_seconds(pids)
    load = run_wrk(stack.url, stack.env, plan.duration_s, plan.connections)
    after = processes_cpu_seconds(pids)
    drain_streams(topology.client)
    cpu = us_per_event(before, after, load["requests"])
    redis_us = {address: cpu[address] for address in primaries}
    return {
        "per_s": load["per_s"],
        "load": load,
        "redis_us_per_scan": redis_us,
        "redis_us_per_scan_sum": round(sum(redis_us.values()), 1),
        "api_us_per_scan": cpu["api"],
        "sink_us_per_scan": cpu["sink"],
    }


def _pair(order: tuple[str, ...], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    single, cluster = runs["single"], runs["cluster"]
    redis_us = "redis_us_per_scan_sum"
    return {
        "order": list(order),
        "single": single,
        "cluster": cluster,
        "redis_cpu_ratio": ratio_of(cluster[redis_us], single[redis_us]),
        "throughput_ratio": ratio_of(cluster["per_s"], single["per_s"]),
    }


def ratio_of(value: float, base: float) -> float | None:
    """``value / base`` to 3 places; None without a base."""
    return round(value / base, 3) if base else None


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One topology's figures, each the median over its runs."""
    addresses = runs[0]["redis_us_per_scan"]
    figures = ("per_s", "redis_us_per_scan_sum", "api_us_per_scan", "sink_us_per_scan")
    return {
        **{figure: median_of([run[figure] for run in runs]) for figure in figures},
        "redis_us_per_scan": {
            address: median_of([run["redis_us_per_scan"][address] for run in runs])
            for address in addresses
        },
    }


def median_of(values: list[float | None]) -> float | None:
    """The median of the known values to 3 places; None if none is known."""
    known = [value for value in values if value is not None]
    return round(statistics.median(known), 3) if known else None


def _nodes(servers: LocalRedis) -> list[dict[str, Any]]:
    """Each primary's address, slots and AOF rewrites over the phase (a rewrite forks a child
    whose CPU the runs count only while it lives, so their count says whether one fell in)."""
    nodes = []
    for primary in servers.primaries:
        with redis.Redis.from_url(primary.url) as client:
            persistence = cast(dict[str, Any], client.info("persistence"))
        nodes.append(
            {
                "address": primary.address,
                "slots": primary.slots,
                "aof_rewrites": persistence["aof_rewrites"],
            }
        )
    return nodes

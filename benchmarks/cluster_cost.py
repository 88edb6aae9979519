"""Cluster cost: Redis's CPU per scan for the scan path's own Redis work, on one node and summed
over a local Redis Cluster's masters, with no HTTP and no API in the way.

``scanward bench --cluster-masters 3`` (``benchmarks.topologies``) finds the masters of a
cluster spending more CPU per scan in sum than one node does. This script isolates Redis's side
of that: one client process drives, through ``ScriptRunner``, the micro-batches the scan path
sends, built with the scan path's own functions:

- round trip 1, the fraud stage's reads (``FraudStage._remembered``): an HGET of each code's
  record (``ingest.scan.state.read_history``) and one ``velocity.lua`` call per actor
  partition with the scans' device and IP observations (``fraud.velocity.count``);
- round trip 2, the decision (``ScanPipeline``): one ``scan_state.lua`` call per scan partition
  (``ingest.scan.state.decide_scans``) whose argument holds each scan's ``pack_scan``, retry key
  and encoded ``ScanEvent``.

The mix is the suite's load (``benchmarks/scan_load.lua``): mostly first scans of codes spread
over 256 ranges of 65,472 serials (so every one of the 16 scan partitions gets scans), ~25%
repeats of codes scanned before, ~2% unknown codes, 100,000 devices, 65,536 client addresses,
a member with every scan, no client scan ids. ``in_flight`` micro-batches wait on Redis at once
(two, as the API's batcher allows).

Two topologies run side by side: one redis-server over ``RedisPipe`` and a cluster of
``masters`` primaries without replicas over ``ClusterPipe`` (``benchmarks.stack.local_redis``).
For each AOF fsync policy (``CONFIG SET appendfsync`` on every node; automatic AOF rewrites
off, so no fork falls into a run), each load (``LOADS``: the cluster's micro-batches of the same
size as the single node's, as at one offered load, or ``masters`` times larger, as a cluster
carrying ``masters`` times the load, whose every master then sees the single node's size) and
each micro-batch size, pairs of runs alternate their order (single, cluster, then cluster,
single, ...) so that the machine's drift falls on both; at one load both topologies run the same
micro-batches. Per run and per redis-server: CPU time (user + system, ``/proc/<pid>/stat``) per
scan, its read and write system calls (``/proc/<pid>/io``) and ``INFO stats`` reads and writes
processed, network bytes and EVALSHA calls per scan. The headline per policy, load and size is
the median over the pairs of cluster (sum of masters) / single.

``python -m benchmarks.cluster_cost [--quick] [--sizes 8 20 64 256] [--policies always
everysec] [--loads same per_master] [--pairs N] [--scans N] [--no-save]`` prints one JSON
document and saves it as ``benchmarks/results/cluster-cost-<stamp>.json`` (not with
``--no-save``). The default run takes about ten minutes; ``--quick`` (two sizes, one pair of tiny
runs) checks that everything runs. Run the real thing alone on the machine (``flock
/tmp/bench.lock python -m benchmarks.cluster_cost``). Traffic goes to 127.0.0.1 only; every
server it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson
import uvloop
from redis.asyncio import Redis

from benchmarks.process_cpu import processes_cpu_seconds, us_per_event
from benchmarks.report import print_or_publish, provenance
from benchmarks.stack import LocalRedis, local_redis
from benchmarks.topologies import REDIS_CPU_RATIO_GOAL, TOPOLOGIES, median_of, ratio_of
from codes import crockford
from codes.batches import new_batch_id
from codes.commands import ScriptCall
from fraud import velocity
from fraud.assessment import ScanFacts
from fraud.location import NO_SERIAL
from fraud.policy import FraudPolicy
from fraud.velocity import Observation
from fraud.verdicts import Verdict
from ingest.config import Settings
from ingest.events.scans import MAX_EVENTS_PER_ENTRY, ScanEvent
from ingest.scan.fraud_stage import observations_of
from ingest.scan.state import (
    SEEN_RANGE,
    decide_scans,
    device_digest,
    member_digest,
    pack_scan,
    partition_of_serial,
    read_history,
    retry_key,
    scan_argument,
    unsunk_limit_per_partition,
)
from ingest.store.connect import scan_client
from ingest.store.scripts import Command, ScriptRunner

SIZES = (8, 20, 64, 256)
POLICIES = ("always", "everysec")
LOADS = ("same", "per_master")
"""``same``: both topologies get micro-batches of the cell's size, as at one offered load;
``per_master``: the cluster gets micro-batches ``masters`` times larger, so each master sees the
size one node does, as a cluster would at ``masters`` times the load."""
SETTINGS = Settings()
PARTITIONS = SETTINGS.partitions
POLICY = FraudPolicy()
UNSUNK_LIMIT = unsunk_limit_per_partition(SETTINGS.max_unsunk_events, PARTITIONS)
RANGES = 256
"""Seen-bitmap ranges the new codes fall in: 16 per scan partition."""
REPEAT_SHARE = 0.25
UNKNOWN_SHARE = 0.02
DEVICES, ADDRESSES, MEMBERS = 100_000, 65_536, 50_000
TIMEOUT_S = 10.0
_STATS = ("total_reads_processed", "total_writes_processed")
_NET = ("total_net_input_bytes", "total_net_output_bytes")
_IO = ("syscr", "syscw")


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What runs: micro-batch sizes, fsync policies, pairs per cell, scans per run."""

    sizes: tuple[int, ...]
    policies: tuple[str, ...]
    loads: tuple[str, ...]
    pairs: int
    scans: int
    """Scans per run (rounded down to whole micro-batches)."""
    in_flight: int
    masters: int


FULL = Plan(SIZES, POLICIES, LOADS, pairs=4, scans=38_400, in_flight=2, masters=3)
QUICK = Plan((8, 64), POLICIES, LOADS, pairs=1, scans=1_280, in_flight=2, masters=3)


class MicroBatch(NamedTuple):
    """A micro-batch's two round trips, as the scan path builds them."""

    scans: int
    remembered: list[ScriptCall | Command]
    """Round trip 1: the codes' records and the actors' counters."""
    decided: list[ScriptCall | Command]
    """Round trip 2: one ``scan_state.lua`` call per partition (of at most 256 scans)."""


class _Scan(NamedTuple):
    facts: ScanFacts
    partition: int
    argument: bytes


class Traffic:
    """Scans of the suite's mix; the codes already scanned are remembered for repeats."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._scanned: list[int] = []
        self._scan_ids = (f"bench{n:x}" for n in itertools.count())
        self._batch_id = new_batch_id()

    def micro_batches(self, scans: int, size: int) -> list[MicroBatch]:
        return [self.micro_batch(size) for _ in range(scans // size)]

    def micro_batch(self, size: int) -> MicroBatch:
        now_ms = time.time_ns() // 1_000_000
        scans = [self._scan(now_ms) for _ in range(size)]
        by_actor_tag: dict[str, list[Observation]] = defaultdict(list)
        for scan in scans:
            for observation in observations_of(scan.facts):
                by_actor_tag[PARTITIONS.actor_tag(observation.actor)].append(observation)
        reads: list[ScriptCall | Command] = [
            read_history(s.facts.serial, PARTITIONS) for s in scans if s.facts.serial != NO_SERIAL
        ]
        counts = [
            velocity.count(tag, observed, now_ms // 1000, POLICY)
            for tag, observed in by_actor_tag.items()
        ]
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for scan in scans:
            by_partition[scan.partition].append(scan.argument)
        decided: list[ScriptCall | Command] = [
            decide_scans(
                PARTITIONS,
                partition,
                arguments[start : start + MAX_EVENTS_PER_ENTRY],
                UNSUNK_LIMIT,
                SETTINGS.scan_id_ttl_s,
            )
            for partition, arguments in by_partition.items()
            for start in range(0, len(arguments), MAX_EVENTS_PER_ENTRY)
        ]
        return MicroBatch(size, [*reads, *counts], decided)

    def _scan(self, now_ms: int) -> _Scan:
        rng = self._rng
        pick = rng.random()
        serial: int | None
        flags: tuple[str, ...]
        if pick < UNKNOWN_SHARE:
            serial, code, flags = None, f"FAKE{rng.getrandbits(32)}", ("malformed",)
        else:
            if pick < UNKNOWN_SHARE + REPEAT_SHARE and self._scanned:
                serial = rng.choice(self._scanned)
            else:
                serial = rng.randrange(1, RANGES * SEEN_RANGE)
                self._scanned.append(serial)
            code, flags = crockford.encode(serial << 60 | rng.getrandbits(60)), ()
        lat, lon = 31.2 + rng.random() * 0.2, 121.4 + rng.random() * 0.2
        device_id = f"dev-{rng.randrange(1, DEVICES + 1)}"
        member_id = f"m-{rng.randrange(1, MEMBERS + 1)}"
        address = rng.randrange(ADDRESSES)
        ip = f"198.18.{address >> 8}.{address & 255}"
        device, member = device_digest(device_id), member_digest(member_id)
        facts = ScanFacts(
            NO_SERIAL if serial is None else serial,
            tuple({"flag": flag} for flag in flags),
            lat,
            lon,
            15.0,
            now_ms,
            device_id,
            device,
            member,
            ip,
        )
        event = ScanEvent(
            time_ms=now_ms,
            serial=serial or 0,
            key_id=0 if serial is None else 1,
            verdict=Verdict.COUNTERFEIT if serial is None else Verdict.GENUINE,
            lat=lat,
            lon=lon,
            accuracy_m=15.0,
            client_time_ms=0,
            latency_us=rng.randrange(500, 5_000),
            scan_id=next(self._scan_ids),
            code=code,
            batch_id="" if serial is None else self._batch_id,
            sku="" if serial is None else "BENCH-SKU",
            gtin="" if serial is None else "4006381333931",
            member_id=member_id,
            device_id=device_id,
            ip=ip,
            flags=flags,
            flag_details=orjson.dumps([{"flag": flag} for flag in flags]).decode(),
            risk=4 if serial is None else 0,
            distributor_id="" if serial is None else "D12",
            surfaced_in="D12",
            distance_km=0.0,
        )
        packed = pack_scan(serial, now_ms, lat, lon, device, member)
        key = retry_key(None, code, device_id, member_id)
        partition = (
            PARTITIONS.of_text(code) if serial is None else partition_of_serial(serial, PARTITIONS)
        )
        return _Scan(facts, partition, scan_argument(packed, key, event.encode()))


class Topology:
    """One topology's servers, the scan path's client of them and a client of each primary."""

    def __init__(self, name: str, servers: LocalRedis) -> None:
        self.name = name
        self.servers = servers
        self.pids = {primary.address: primary.pid for primary in servers.primaries}
        self.scripts = ScriptRunner(scan_client(servers.url, TIMEOUT_S))
        self.nodes = {primary.address: Redis.from_url(primary.url) for primary in servers.primaries}

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.aclose()

    async def configure(self, policy: str) -> None:
        """Every node's AOF fsync policy; no automatic AOF rewrite."""
        for node in self.nodes.values():
            await node.config_set("appendfsync", policy)
            await node.config_set("auto-aof-rewrite-percentage", 0)

    async def run(self, micro_batches: Sequence[MicroBatch], in_flight: int) -> dict[str, Any]:
        """The micro-batches, ``in_flight`` at a time, and what each primary spent on them."""
        for node in self.nodes.values():
            await node.config_resetstat()
        io_before = {address: _io(pid) for address, pid in self.pids.items()}
        cpu_before = processes_cpu_seconds(self.pids)
        started = time.perf_counter()
        await drive(self.scripts, micro_batches, in_flight)
        seconds = time.perf_counter() - started
        cpu_after = processes_cpu_seconds(self.pids)
        io_after = {address: _io(pid) for address, pid in self.pids.items()}
        scans = sum(batch.scans for batch in micro_batches)
        counts: dict[str, float] = dict.fromkeys((*_IO, *_STATS, *_NET, "evalsha_calls"), 0)
        for address, node in self.nodes.items():
            stats = cast(dict[str, int], await node.info("stats"))
            commands = cast(dict[str, dict[str, int]], await node.info("commandstats"))
            for name in _IO:
                counts[name] += io_after[address][name] - io_before[address][name]
            for name in (*_STATS, *_NET):
                counts[name] += stats[name]
            counts["evalsha_calls"] += commands.get("cmdstat_evalsha", {}).get("calls", 0)
        await self._empty_streams()
        redis_us = us_per_event(cpu_before, cpu_after, scans)
        return {
            "scans": scans,
            "seconds": round(seconds, 3),
            "scans_per_s": round(scans / seconds),
            "redis_us_per_scan": redis_us,
            "redis_us_per_scan_sum": round(sum(redis_us.values()), 1),
            "per_scan": {name: round(value / scans, 3) for name, value in counts.items()},
            "per_micro_batch": {
                name: round(counts[name] / len(micro_batches), 2)
                for name in ("total_reads_processed", "syscw")
            },
        }

    async def _empty_streams(self) -> None:
        """What a sink would take away: the partitions' events and unsunk counts."""
        deletes: list[ScriptCall | Command] = [
            ("DEL", PARTITIONS.stream_key(p), PARTITIONS.unsunk_key(p))
            for p in range(PARTITIONS.scans)
        ]
        _raise_errors(await self.scripts.run_many(deletes))

    async def aof_rewrites(self) -> dict[str, int]:
        persistence = {a: await node.info("persistence") for a, node in self.nodes.items()}
        return {address: int(info["aof_rewrites"]) for address, info in persistence.items()}


async def drive(scripts: ScriptRunner, micro_batches: Sequence[MicroBatch], in_flight: int) -> None:
    """Each micro-batch's two round trips, ``in_flight`` micro-batches waiting at once."""
    queue = iter(micro_batches)

    async def lane() -> None:
        for batch in queue:
            _raise_errors(await scripts.run_many(batch.remembered))
            _raise_errors(await scripts.run_many(batch.decided))

    await asyncio.gather(*(lane() for _ in range(in_flight)))


def _raise_errors(replies: Sequence[object]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _io(pid: int) -> dict[str, int]:
    """The read and write system calls the process has made (``/proc/<pid>/io``)."""
    rows = (line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {name: int(value) for name, value in rows if name in _IO}


async def measure(plan: Plan, topologies: Mapping[str, Topology]) -> list[dict[str, Any]]:
    """Every cell (policy x size): its pairs, alternating order, on the same micro-batches."""
    traffic = Traffic(seed=7)
    warm_up = traffic.micro_batches(plan.scans, 20)
    for topology in topologies.values():  # scripts loaded, connections made, bitmaps created
        await topology.run(warm_up, plan.in_flight)
    cells = []
    for policy in plan.policies:
        for topology in topologies.values():
            await topology.configure(policy)
        for load, size in itertools.product(plan.loads, plan.sizes):
            cluster_size = size * plan.masters if load == "per_master" else size
            pairs = []
            for number in range(plan.pairs):
                _say(f"{policy}, {size} scans per micro-batch ({load}): pair {number + 1}")
                micro_batches = traffic.micro_batches(plan.scans, size)
                sizes = {"single": micro_batches, "cluster": micro_batches}
                if cluster_size != size:
                    sizes["cluster"] = traffic.micro_batches(plan.scans, cluster_size)
                order = TOPOLOGIES if number % 2 == 0 else TOPOLOGIES[::-1]
                runs = {
                    name: await topologies[name].run(sizes[name], plan.in_flight) for name in order
                }
                pairs.append(_pair(order, runs))
            cells.append(_cell(policy, load, size, pairs))
    return cells


def _pair(order: Sequence[str], runs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    redis_us = "redis_us_per_scan_sum"
    ratio = ratio_of(runs["cluster"][redis_us], runs["single"][redis_us])
    return {"order": list(order), **runs, "redis_cpu_ratio": ratio}


def _cell(policy: str, load: str, size: int, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    clusters = [pair["cluster"] for pair in pairs]
    masters = clusters[0]["redis_us_per_scan"]
    return {
        "appendfsync": policy,
        "load": load,
        "scans_per_micro_batch": size,
        "pairs": pairs,
        "median": {
            "single_us_per_scan": median_of([p["single"]["redis_us_per_scan_sum"] for p in pairs]),
            "cluster_us_per_scan_by_master": {
                address: median_of([run["redis_us_per_scan"][address] for run in clusters])
                for address in masters
            },
            "cluster_us_per_scan_sum": median_of(
                [run["redis_us_per_scan_sum"] for run in clusters]
            ),
            "redis_cpu_ratio": median_of([pair["redis_cpu_ratio"] for pair in pairs]),
            **{
                f"{name}_{figure}_per_scan": median_of(
                    [pair[name]["per_scan"][figure] for pair in pairs]
                )
                for name in TOPOLOGIES
                for figure in ("total_reads_processed", "syscr", "syscw")
            },
        },
    }


def _table(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: the headline figures, each pair's ratio and their median."""
    return [
        {
            "appendfsync": cell["appendfsync"],
            "load": cell["load"],
            "scans_per_micro_batch": cell["scans_per_micro_batch"],
            "single_us_per_scan": cell["median"]["single_us_per_scan"],
            "cluster_us_per_scan_by_master": list(
                cell["median"]["cluster_us_per_scan_by_master"].values()
            ),
            "cluster_us_per_scan_sum": cell["median"]["cluster_us_per_scan_sum"],
            "ratios": [pair["redis_cpu_ratio"] for pair in cell["pairs"]],
            "ratio_median": cell["median"]["redis_cpu_ratio"],
        }
        for cell in cells
    ]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(plan: Plan, quick: bool) -> dict[str, Any]:
    """Both topologies started in a temporary folder, measured, and stopped by PID."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scanward-cluster-cost-") as folder, ExitStack() as up:
        data = Path(folder)
        servers = {
            name: up.enter_context(local_redis(data / name, masters))
            for name, masters in zip(TOPOLOGIES, (1, plan.masters), strict=True)
        }
        cells, rewrites = uvloop.run(_measure_all(plan, servers))
    return {
        "benchmark": "cluster_cost",
        **provenance(),
        "quick": quick,
        "plan": dataclasses.asdict(plan),
        "goal_redis_cpu_ratio": REDIS_CPU_RATIO_GOAL,
        "mix": {
            "repeat_share": REPEAT_SHARE,
            "unknown_share": UNKNOWN_SHARE,
            "seen_ranges": RANGES,
            "devices": DEVICES,
            "addresses": ADDRESSES,
            "members": MEMBERS,
            "partitions": dataclasses.asdict(PARTITIONS),
        },
        "nodes": {
            name: [dataclasses.asdict(primary) for primary in s.primaries]
            for name, s in servers.items()
        },
        "aof_rewrites": rewrites,
        "table": _table(cells),
        "cells": cells,
        "run_s": round(time.monotonic() - started, 1),
    }


async def _measure_all(
    plan: Plan, servers: Mapping[str, LocalRedis]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    topologies = {name: Topology(name, s) for name, s in servers.items()}
    try:
        cells = await measure(plan, topologies)
        rewrites = {name: await t.aof_rewrites() for name, t in topologies.items()}
    finally:
        for topology in topologies.values():
            await topology.close()
    return cells, rewrites


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="two sizes, one pair of tiny runs")
    parser.add_argument("--sizes", type=int, nargs="+", help="scans per micro-batch")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, help="appendfsync policies")
    parser.add_argument("--loads", nargs="+", choices=LOADS, help="same or per_master (both)")
    parser.add_argument("--pairs", type=int, help="pairs of runs per size and policy")
    parser.add_argument("--scans", type=int, help="scans per run")
    parser.add_argument("--no-save", action="store_true", help="print, do not save the report")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    changes = {
        "sizes": None if args.sizes is None else tuple(args.sizes),
        "policies": None if args.policies is None else tuple(args.policies),
        "loads": None if args.loads is None else tuple(args.loads),
        "pairs": args.pairs,
        "scans": args.scans,
    }
    plan = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    if min(plan.sizes) < 1 or plan.pairs < 1 or plan.scans < max(plan.sizes):
        parser.error("--sizes and --pairs must be positive and --scans at least the largest size")
    result = run(plan, args.quick)
    print_or_publish(result, "cluster-cost", save=not args.no_save, quick=args.quick)


if __name__ == "__main__":
    main()

"""``scanward bench`` (or ``python -m benchmarks``): the load-test suite, one report.

Every figure comes with a ceiling measured in the same run, because absolute times on a shared
machine drift:

1. codes generated and verified per core, against the HMAC alone (``codes_bench``);
2. the scan path for each worker count: wrk against ``hello_server`` (the ceiling), then against
   ``scanward serve`` with ``scanward sink`` running, on a stack with the codes shipped to a grid
   of distributor territories, members with tiers and one open prize campaign (``stack``); CPU
   per scan by process and, from the API's stage timers, by stage; the sink's backlog at peak;
3. latency under an open-loop fixed arrival rate at 25/50/75/90% of the first peak
   (``open_loop``), so queueing delay shows;
4. bulk NDJSON ingest, against the hello server's bulk echo (``bulk_load``);
5. the sink's rows/s against a raw clickhouse-driver insert of the same rows (``sink_bench``);
6. Redis memory per scanned and per issued code at 1M and 10M issued codes (``scan_memory``);
7. with ``--cluster-masters N``, the scan path at peak on one Redis node and on a local Redis
   Cluster of N masters, in interleaved pairs, with Redis CPU per scan per master: summed, the
   single node's plus a small overhead (``topologies``).

With ``--url`` the scan-path phases load a stack that is already running (its codes given with
``--codes-file``); its processes are not restarted, so there is one worker count and no CPU by
process. Writes ``benchmarks/results/suite-<stamp>.json`` with a Markdown summary and PNG charts
beside it; ``--compare OLD.json`` prints the ratios to an earlier run. Traffic goes to 127.0.0.1
only; every phase is bounded in time and count; Ctrl-C stops what the suite started.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import orjson
import redis

from benchmarks import (
    bulk_load,
    campaign_bench,
    codes_bench,
    open_loop,
    scan_memory,
    sink_bench,
    suite_report,
    topologies,
)
from benchmarks.compare import compare, format_comparison
from benchmarks.load_cost import LoadCost, costing
from benchmarks.process_cpu import processes_cpu_seconds
from benchmarks.progress import Progress
from benchmarks.report import RESULTS, provenance, publish
from benchmarks.stack import (
    SKU,
    WARM_UP_S,
    BenchStack,
    drain_streams,
    local_stack,
    process,
    scanward,
    wait_healthy,
)
from benchmarks.wrk import run_wrk
from ingest.config import Settings
from ingest.ops import local_services

OPEN_LOOP_FRACTIONS = (0.25, 0.5, 0.75, 0.9)
BULK_LINES = 1000
BULK_EVENTS_PER_S = 150_000


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    duration_s: int = 10
    connections: int = 64
    codes: int = 1_000_000
    territories: int = 1000
    members: int = 100_000
    campaign: bool = True
    workers: tuple[int, ...] = (1, 2)
    memory_codes: tuple[int, ...] = (1_000_000, 10_000_000)
    memory_scanned_fraction: float = 0.05
    sink_events: int = 1_000_000  # ten batches: the read-ahead's steady state
    codes_per_run: int = 1_000_000
    cluster_masters: int = 0  # 0: no cluster topology
    cluster_pairs: int = 4
    url: str | None = None
    codes_file: Path | None = None

    @classmethod
    def quick(cls) -> SuiteOptions:
        """Every phase, small and short: a check that the suite works, not figures."""
        return cls(
            duration_s=2,
            connections=16,
            codes=50_000,
            territories=16,
            members=1000,
            workers=(1,),
            memory_codes=(100_000,),
            sink_events=5000,
            codes_per_run=20_000,
            cluster_pairs=2,
        )


@dataclass(frozen=True, slots=True)
class _Target:
    """What the scan-path phases load: a stack of the suite's own, or a running one."""

    url: str
    env: dict[str, str]  # of the hello servers and the load
    stack: BenchStack | None


def run(options: SuiteOptions, progress: Progress) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "suite",
        **provenance(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": _options_json(options),
    }
    result["machine"].update(_versions())
    with progress.phase("codes: generation and verification per core"):
        result["codes"] = codes_bench.measure(options.codes_per_run, options.codes_per_run // 5)
    with _target(options, progress) as target:
        result["scan_path"], result["bulk_ingest"], lag = _scan_path(options, target, progress)
    if options.cluster_masters:
        result["topologies"] = topologies.run(topology_plan(options), progress)
    with progress.phase(f"sink: {options.sink_events:,} events against a raw insert"):
        sink = sink_bench.run(options.sink_events, Settings().sink_batch_rows)
        result["sink"] = {**sink, "at_scan_peak": lag}
    with progress.phase("Redis memory per code"):
        result["memory"] = scan_memory.run(options.memory_codes, [options.memory_scanned_fraction])
    result["goals"] = goals(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals with the values measured (None when a phase did not run)."""
    scan_path, bulk, sink = result["scan_path"], result["bulk_ingest"], result["sink"]
    no_row: dict[str, Any] = {}
    half = next((r for r in scan_path["open_loop"] if r["fraction"] == 0.5), no_row)
    largest = max(result["memory"], key=lambda row: row["issued_codes"], default=no_row)
    return [
        _goal("scan_ceiling_ratio", "full scan path / hello-world ceiling, 1 worker",
              scan_path["ceiling_ratio"], ">=", 0.6),
        _goal("p99_at_half_peak_ms", "open-loop p99 at 50% of peak",
              half.get("p99_ms"), "<=", 10, "ms"),
        _goal("bulk_events_per_s", "bulk NDJSON ingest per process",
              bulk.get("events_per_s"), ">=", 200_000, "events/s"),
        _goal("sink_ratio", "sink rows/s / the faster raw insert (str or UTF-8 bytes)",
              _sink_ratio(sink), ">=", 0.8),
        _goal("redis_bytes_per_scanned_code", "Redis per scanned code",
              largest.get("bytes_per_scanned_code"), "<=", 100, "B"),
        _goal("redis_bits_per_unscanned_code", "Redis per issued code not scanned (its bit)",
              largest.get("bitmap_bits_per_issued_code"), "<=", 1, "bit"),
        *_topology_goals(result.get("topologies")),
    ]  # fmt: skip


def _topology_goals(section: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The cluster's goal, only in a run that measured one (``--cluster-masters``)."""
    if section is None:
        return []
    description = f"Redis CPU per scan, {section['masters']} masters' sum / one node (median)"
    target = topologies.REDIS_CPU_RATIO_GOAL
    return [_goal("cluster_redis_cpu_ratio", description, section["redis_cpu_ratio"], "<=", target)]


def topology_plan(options: SuiteOptions) -> topologies.TopologyPlan:
    """The cluster topology's run: the scan path's load (its first worker count) on a stack of
    the suite's size."""
    return topologies.TopologyPlan(
        masters=options.cluster_masters,
        pairs=options.cluster_pairs,
        workers=options.workers[0],
        duration_s=options.duration_s,
        connections=options.connections,
        codes=options.codes,
        territories=options.territories,
        members=options.members,
        campaign=options.campaign,
    )


def _sink_ratio(sink: dict[str, Any]) -> float | None:
    """Against the faster raw insert: the sink inserts text as UTF-8 bytes, which the driver
    writes faster than ``str``."""
    ratios = [sink[key] for key in ("ratio", "ratio_to_utf8") if key in sink]
    return min(ratios, default=None)


def _goal(
    goal_id: str, description: str, value: float | None, test: str, target: float, unit: str = ""
) -> dict[str, Any]:
    better = "higher" if test == ">=" else "lower"
    met = None if value is None else (value >= target if better == "higher" else value <= target)
    return {
        "id": goal_id,
        "description": description,
        "value": value,
        "target": target,
        "better": better,
        "met": met,
        "unit": unit,
    }


@contextmanager
def _target(options: SuiteOptions, progress: Progress) -> Iterator[_Target]:
    if options.url is not None:
        assert options.codes_file is not None
        with tempfile.TemporaryDirectory(prefix="scanward-bench-") as folder:
            env = {
                "SCANWARD_DATA_DIR": folder,
                "SCAN_CODES": str(options.codes_file),
                "SCAN_MEMBERS": str(options.members),
            }
            yield _Target(options.url.rstrip("/"), env, None)
        return
    with (
        progress.phase(f"stack: {options.codes:,} codes, {options.territories} territories"),
        local_stack(options.codes, options.codes, options.territories, options.members) as stack,
    ):
        yield _Target(stack.url, stack.env, stack)


def _scan_path(
    options: SuiteOptions, target: _Target, progress: Progress
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The scan path section, the bulk ingest section and the sink's backlog at the first peak."""
    by_workers: list[dict[str, Any]] = []
    open_loop_rows: list[dict[str, Any]] = []
    stages: dict[str, float] = {}
    bulk: dict[str, Any] = {}
    lag: dict[str, Any] = {}
    stack = target.stack
    bodies = _bulk_bodies(options, target)
    sinking = process(scanward("sink"), target.env) if stack else nullcontext()
    with sinking as sink:
        for workers in options.workers:
            first = not by_workers
            ceiling, bulk_ceiling = _ceilings(
                options, target, workers, bodies if first else [], progress
            )
            with _api(target, workers) as api:
                if first and options.campaign and stack:
                    campaign_bench.put_campaign(target.url, SKU)
                pids = {}
                if stack and api and sink:
                    pids = {"api": api.pid, "sink": sink.pid, "clickhouse": stack.clickhouse_pid}
                with progress.phase(f"scan path, {workers} worker(s): warm-up", WARM_UP_S):
                    run_wrk(target.url, target.env, WARM_UP_S, options.connections)
                _settle(target)
                with progress.phase(f"scan path, {workers} worker(s): peak", options.duration_s):
                    entry, stage_us = _peak(options, target, pids, ceiling, workers)
                peak_lag = _settle(target)
                by_workers.append(entry)
                if first:
                    stages, lag = stage_us, peak_lag
                    open_loop_rows = _open_loop(options, target, entry["peak_per_s"], progress)
                    bulk = _bulk(options, target, pids, bodies, bulk_ceiling, progress)
    scan_path = {
        "by_workers": by_workers,
        "ceiling_ratio": by_workers[0]["ceiling_ratio"],
        "open_loop": open_loop_rows,
        "stages_us_per_scan": stages,
    }
    return scan_path, bulk, lag


def _ceilings(
    options: SuiteOptions,
    target: _Target,
    workers: int,
    bulk_bodies: list[bytes],
    progress: Progress,
) -> tuple[dict[str, Any], float]:
    """wrk's figures against ``workers`` hello servers, and (given bodies) their bulk echo's
    events/s."""
    port = target.stack.port if target.stack else local_services.free_port()
    url = f"http://127.0.0.1:{port}"
    hello = [sys.executable, "-m", "benchmarks.hello_server", str(port)]
    with _processes([hello] * workers, target.env) as servers:
        wait_healthy(url)
        pids = {f"hello-{n}": server.pid for n, server in enumerate(servers)}
        with progress.phase(f"ceiling, {workers} hello-world worker(s)", options.duration_s):
            run_wrk(url, target.env, WARM_UP_S, options.connections)
            before = processes_cpu_seconds(pids)
            ceiling = run_wrk(url, target.env, options.duration_s, options.connections)
            after = processes_cpu_seconds(pids)
        # what aiohttp and the loop cost the same request with no work: beside http_and_loop
        ceiling["cpu_us_per_request"] = round(
            (sum(after.values()) - sum(before.values())) / max(1, ceiling["requests"]) * 1e6, 1
        )
        bulk_per_s = 0.0
        if bulk_bodies:
            with progress.phase("ceiling, bulk NDJSON echo", options.duration_s):
                echo = bulk_load.measure(url, bulk_bodies, options.duration_s)
            bulk_per_s = echo["events_per_s"]
    return ceiling, bulk_per_s


@contextmanager
def _processes(
    commands: list[list[str]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    with ExitStack() as stack:
        yield [stack.enter_context(process(command, env)) for command in commands]


@contextmanager
def _api(target: _Target, workers: int) -> Iterator[subprocess.Popen[bytes] | None]:
    if target.stack is None:
        wait_healthy(target.url)
        yield None
        return
    with process(scanward("serve", "--workers", str(workers)), target.env) as api:
        wait_healthy(target.url)
        yield api


def _peak(
    options: SuiteOptions,
    target: _Target,
    pids: dict[str, int],
    ceiling: dict[str, Any],
    workers: int,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The peak's entry of ``by_workers`` and its CPU per scan by stage."""
    with _cost(target, pids) as cost:
        peak = run_wrk(target.url, target.env, options.duration_s, options.connections)
    entry = {
        "workers": workers,
        "ceiling_per_s": ceiling["per_s"],
        "peak_per_s": peak["per_s"],
        "ceiling_ratio": round(peak["per_s"] / ceiling["per_s"], 3),
        "ceiling": ceiling,
        "peak": peak,
        "cpu_us_per_scan": cost.cpu_us(peak["requests"]),
        "mean_batch": cost.mean_batch(),
    }
    return entry, cost.stages_us(peak["requests"])


def _open_loop(
    options: SuiteOptions, target: _Target, peak_per_s: float, progress: Progress
) -> list[dict[str, Any]]:
    rows = []
    for fraction in OPEN_LOOP_FRACTIONS:
        rate = round(peak_per_s * fraction)
        _settle(target)
        with progress.phase(f"open loop at {fraction:.0%} of peak: {rate:,}/s", options.duration_s):
            command = [
                sys.executable, "-m", "benchmarks.open_loop",
                "--url", target.url,
                "--rate", str(rate),
                "--duration", str(options.duration_s),
                "--codes", target.env["SCAN_CODES"],
                "--members", target.env["SCAN_MEMBERS"],
                "--seed", str(int(fraction * 100)),
            ]  # fmt: skip
            output = subprocess.run(command, capture_output=True, check=True).stdout
        rows.append({"fraction": fraction, **orjson.loads(output.splitlines()[-1])})
    return rows


def _bulk(
    options: SuiteOptions,
    target: _Target,
    pids: dict[str, int],
    bodies: list[bytes],
    ceiling_per_s: float,
    progress: Progress,
) -> dict[str, Any]:
    _settle(target)
    with (
        progress.phase("bulk NDJSON ingest", options.duration_s),
        _cost(target, pids) as cost,
    ):
        loaded = bulk_load.measure(target.url, bodies, options.duration_s)
    return {
        **loaded,
        "bodies_cycled": loaded["requests"] > len(bodies),
        "ceiling_events_per_s": ceiling_per_s,
        "ceiling_ratio": round(loaded["events_per_s"] / ceiling_per_s, 3),
        "cpu_us_per_event": cost.cpu_us(loaded["events"]),
        "stages_us_per_event": cost.stages_us(loaded["events"]),
        "mean_batch": cost.mean_batch(),
    }


def _bulk_bodies(options: SuiteOptions, target: _Target) -> list[bytes]:
    """Enough for the window at ``BULK_EVENTS_PER_S``; past that the bodies are sent again (the
    result's ``bodies_cycled``), and their scans are retries."""
    codes = open_loop.read_codes(Path(target.env["SCAN_CODES"]))
    count = max(1, options.duration_s * BULK_EVENTS_PER_S // BULK_LINES)
    return bulk_load.build_bodies(codes, BULK_LINES, count, int(target.env["SCAN_MEMBERS"]))


def _cost(target: _Target, pids: dict[str, int]) -> AbstractContextManager[LoadCost]:
    return costing(target.url, _redis(target) if pids else None, pids)


def _redis(target: _Target) -> redis.Redis | None:
    return redis.Redis.from_url(target.stack.redis_url) if target.stack else None


def _settle(target: _Target) -> dict[str, Any]:
    """Waits for the sink to empty the streams, so one phase's backlog costs the next nothing;
    returns the backlog found and how long it took to drain."""
    client = _redis(target)
    if client is None:
        return {}
    with client:
        return drain_streams(client)


def _options_json(options: SuiteOptions) -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(orjson.dumps(asdict(options), default=str)))


def _versions() -> dict[str, str]:
    versions = {"kernel": platform.release()}
    for package in ("aiohttp", "uvloop", "redis", "clickhouse-driver", "numpy"):
        versions[f"{package} (Python)"] = metadata.version(package)
    # "Redis server v=7.0.15 sha=...", "ClickHouse client version 18.16.1." (the same package)
    for name, binary, package, word in (
        ("redis", "redis-server", "redis-server", "v="),
        ("clickhouse", "clickhouse-client", "clickhouse-client", "version "),
    ):
        path = local_services.find_binary(binary, package)
        output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        versions[name] = output.partition(word)[2].split(" ")[0].rstrip(".") or "unknown"
    return versions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SuiteOptions()
    parser.add_argument("--duration", type=int, default=defaults.duration_s, help="s per phase")
    parser.add_argument(
        "--connections", type=int, default=defaults.connections, help="wrk's open connections"
    )
    parser.add_argument("--codes", type=int, default=defaults.codes, help="codes issued")
    parser.add_argument(
        "--territories", type=int, default=defaults.territories, help="distributor territories"
    )
    parser.add_argument(
        "--members", type=int, default=defaults.members, help="members with tiers who scan"
    )
    parser.add_argument("--no-campaign", action="store_true", help="no prize campaign open")
    parser.add_argument("--workers", default="1,2", help="worker counts of the scan path")
    parser.add_argument("--memory-codes", default="1000000,10000000", help="issued codes")
    parser.add_argument(
        "--cluster-masters",
        type=int,
        default=defaults.cluster_masters,
        metavar="N",
        help="also the scan path on a local Redis Cluster of N (3 or more) masters beside one "
        "node, in interleaved pairs (0: not)",
    )
    parser.add_argument(
        "--cluster-pairs",
        type=int,
        default=defaults.cluster_pairs,
        help="pairs of runs, one node and the cluster, with --cluster-masters",
    )
    parser.add_argument("--quick", action="store_true", help="every phase, small and short")
    parser.add_argument("--url", help="load a running stack at this 127.0.0.1 URL instead")
    parser.add_argument("--codes-file", type=Path, help="with --url: its codes, one a line")
    parser.add_argument(
        "--compare", type=_earlier_run, help="an earlier suite-*.json to compare with"
    )


def _earlier_run(path: str) -> dict[str, Any]:
    """``--compare``'s report, read with the options, so that a bad one stops the run before
    it starts."""
    try:
        report = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{path}: {error.strerror}") from None
    except orjson.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"{path}: not JSON") from None
    if not isinstance(report, dict):
        raise argparse.ArgumentTypeError(f"{path}: not a report of 'scanward bench'")
    return report


def options_from(args: argparse.Namespace) -> SuiteOptions:
    if args.quick:
        return replace(
            SuiteOptions.quick(),
            cluster_masters=args.cluster_masters,
            url=args.url,
            codes_file=args.codes_file,
        )
    return SuiteOptions(
        duration_s=args.duration,
        connections=args.connections,
        codes=args.codes,
        territories=args.territories,
        members=args.members,
        campaign=not args.no_campaign,
        workers=tuple(int(n) for n in args.workers.split(",")),
        memory_codes=tuple(int(n) for n in args.memory_codes.split(",")),
        cluster_masters=args.cluster_masters,
        cluster_pairs=args.cluster_pairs,
        url=args.url,
        codes_file=args.codes_file,
    )


class BenchError(Exception):
    """Options the suite cannot run with, or a tool it needs missing."""


def bench(args: argparse.Namespace) -> None:
    """``scanward bench``: runs the suite, saves and prints its reports."""
    if args.url is not None:
        try:
            open_loop.loopback_target(args.url)
        except ValueError as error:
            raise BenchError(str(error)) from None
        if args.codes_file is None:
            raise BenchError("--url needs --codes-file: the codes of the running stack to scan")
    if args.cluster_masters:
        if args.cluster_masters < 3:
            raise BenchError("--cluster-masters needs 3 or more: a Redis Cluster's least")
        if args.url is not None:
            raise BenchError("--cluster-masters starts stacks of its own: not with --url")
        if args.cluster_pairs < 1:
            raise BenchError("--cluster-pairs needs 1 or more")
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: run 'make' or 'sudo apt-get install wrk'")
    result = run(options_from(args), Progress())
    variant = "-quick" if args.quick else "-url" if args.url else ""
    stem = RESULTS / f"suite-{time.strftime('%Y%m%d-%H%M%S')}{variant}"
    publish(result, stem.name)
    for path in suite_report.write_report(result, stem):
        print(f"wrote {path}", file=sys.stderr)
    if args.compare is not None:
        print(format_comparison(compare(result, args.compare)))

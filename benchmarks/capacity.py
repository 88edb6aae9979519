"""Capacity model (issue 17, item 7): from measured costs per scan to the servers a brand needs.

``python -m benchmarks.capacity collect`` gathers the measured figures from files already in
``benchmarks/results`` (the suite's CPU per scan by process, its Redis memory per code and sink
rows/s; the analytics benchmark's ClickHouse bytes per row) into
``capacity-inputs-<date>.json``, each figure with the file and field it came from.
``python -m benchmarks.capacity size INPUTS`` prints what a target needs (API workers, Redis
masters and replicas, sinks, ClickHouse shards and replicas) as JSON, or with ``--format
markdown`` as a table. Every assumption that is not measured is a named default of
``Assumptions``, printed with the result; every figure is sized so that the peak uses at most
``max_utilisation`` of the CPU it is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.report import RESULTS, provenance, publish

INPUTS = {
    "api_cpu_us_per_scan": "API worker CPU per scan, µs",
    "redis_cpu_us_per_scan": "Redis CPU per scan, µs",
    "sink_cpu_us_per_scan": "sink CPU per scan, µs",
    "clickhouse_cpu_us_per_scan": "ClickHouse CPU per scan (its inserts and merges), µs",
    "redis_bytes_per_scanned_code": "Redis bytes per scanned code (its record)",
    "redis_bytes_per_issued_code": "Redis bytes per issued code (its seen-bit)",
    "sink_rows_per_s_per_shard": "rows/s one sink writes into one ClickHouse server",
    "clickhouse_bytes_per_scan_row": "ClickHouse bytes on disk per raw scan row",
}
GB = 1e9
TB = 1e12


@dataclass(frozen=True, slots=True)
class Target:
    """What the brand asks for (issue 17)."""

    issued_codes: float = 10e9
    """Codes whose seen-bit Redis holds."""
    scans_per_year: float = 1e9
    peak_scans_per_s: float = 50_000
    """A campaign's peak."""
    years: float = 3
    """Of raw scans kept: rows in ClickHouse and, as scan records never expire, codes in Redis."""


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What is not measured here: each a choice to revisit on real machines."""

    max_utilisation: float = 0.5
    """Of every core at the peak: the rest absorbs bursts, a failed node's share and GC."""
    cores_per_node: int = 16
    """Of an API or ClickHouse node."""
    redis_cluster_cpu_factor: float = 1.0
    """Redis CPU per scan on a cluster over one node at the same load per master (measured
    0.92 to 1.18 by ``benchmarks.cluster_cost``; 1.45 to 1.97 when the same load is split)."""
    redis_memory_per_node_gb: float = 64
    redis_memory_fill: float = 0.5
    """Share of a Redis node's memory its data may fill: an AOF rewrite's copy-on-write and
    fragmentation take the rest."""
    redis_replicas: int = 1
    """Per master."""
    first_scan_share: float = 1.0
    """Scans that are a code's first (each adds a scan record): 1 is the upper bound."""
    clickhouse_replicas: int = 2
    """Per shard."""
    clickhouse_disk_per_node_tb: float = 4
    clickhouse_disk_fill: float = 0.7
    """Share of a ClickHouse disk the data may fill: merges need room for a part's copy."""


def value(entry: Any) -> float:
    """An input given as a number or as ``{"value": number, "source": ...}``."""
    return float(entry["value"] if isinstance(entry, dict) else entry)


def size(inputs: dict[str, Any], target: Target, assume: Assumptions) -> dict[str, Any]:
    """The sizing of ``target`` from ``inputs`` (the names of ``INPUTS``)."""
    missing = sorted(set(INPUTS) - set(inputs))
    if missing:
        raise ValueError(f"inputs lack {', '.join(missing)}")
    v = {name: value(inputs[name]) for name in INPUTS}
    peak, util = target.peak_scans_per_s, assume.max_utilisation

    def cores(us_per_scan: float) -> float:
        return peak * us_per_scan / 1e6 / util

    api_cores = math.ceil(cores(v["api_cpu_us_per_scan"]))

    scanned_codes = target.scans_per_year * target.years * assume.first_scan_share
    redis_bytes = (
        target.issued_codes * v["redis_bytes_per_issued_code"]
        + scanned_codes * v["redis_bytes_per_scanned_code"]
    )
    redis_usable = assume.redis_memory_per_node_gb * GB * assume.redis_memory_fill
    redis_cores = cores(v["redis_cpu_us_per_scan"] * assume.redis_cluster_cpu_factor)
    masters_for = {"cpu": math.ceil(redis_cores), "memory": math.ceil(redis_bytes / redis_usable)}
    masters = max(1, *masters_for.values())

    sink_cores = cores(v["sink_cpu_us_per_scan"])
    sink_rows = peak / (v["sink_rows_per_s_per_shard"] * util)
    sinks_for = {"cpu": math.ceil(sink_cores), "rows": math.ceil(sink_rows)}

    rows = target.scans_per_year * target.years
    data_bytes = rows * v["clickhouse_bytes_per_scan_row"]
    disk_usable = assume.clickhouse_disk_per_node_tb * TB * assume.clickhouse_disk_fill
    clickhouse_cores = cores(v["clickhouse_cpu_us_per_scan"])
    shards_for = {
        "cpu": math.ceil(clickhouse_cores / assume.cores_per_node),
        "rows": math.ceil(sink_rows),
        "disk": math.ceil(data_bytes / disk_usable),
    }
    shards = max(1, *shards_for.values())
    return {
        "target": dataclasses.asdict(target),
        "assumptions": dataclasses.asdict(assume),
        "inputs": {name: inputs[name] for name in INPUTS},
        "api": {
            "cores_needed": round(cores(v["api_cpu_us_per_scan"]), 2),
            "workers": api_cores,
            "nodes": math.ceil(api_cores / assume.cores_per_node),
        },
        "redis": {
            "cores_needed": round(redis_cores, 2),
            "data_gb": round(redis_bytes / GB, 1),
            "masters_for": masters_for,
            "masters": masters,
            "bound_by": _bound(masters_for),
            "replicas": masters * assume.redis_replicas,
            "memory_per_node_gb": assume.redis_memory_per_node_gb,
            "data_per_master_gb": round(redis_bytes / masters / GB, 1),
        },
        "sinks": {
            "cores_needed": round(sink_cores, 2),
            "sinks_for": sinks_for,
            "sinks": max(1, *sinks_for.values()),
            "bound_by": _bound(sinks_for),
        },
        "clickhouse": {
            "cores_needed": round(clickhouse_cores, 2),
            "rows": rows,
            "data_tb": round(data_bytes / TB, 3),
            "shards_for": shards_for,
            "shards": shards,
            "bound_by": _bound(shards_for),
            "replicas": assume.clickhouse_replicas,
            "servers": shards * assume.clickhouse_replicas,
            "data_per_shard_tb": round(data_bytes / shards / TB, 3),
            "disk_per_server_tb": assume.clickhouse_disk_per_node_tb,
        },
    }


def _bound(needs: dict[str, int]) -> str:
    """Which needs set the count: those asking the most, joined by ``+`` when they tie."""
    most = max(needs.values())
    return "+".join(need for need, count in needs.items() if count == most)


def markdown(sizing: dict[str, Any]) -> str:
    """The sizing as a table: what to run, how many, what each holds, and what set the count."""
    api, redis, sinks, ch = (sizing[k] for k in ("api", "redis", "sinks", "clickhouse"))
    cores_per_node = sizing["assumptions"]["cores_per_node"]
    rows = [
        ("API workers", f"{api['workers']}", f"1 core each, on {api['nodes']} nodes of "
         f"{cores_per_node} cores", f"CPU: {api['cores_needed']} cores"),
        ("Redis masters", f"{redis['masters']}", f"{redis['memory_per_node_gb']:g} GB node, "
         f"{redis['data_per_master_gb']:g} GB of data", _needs(redis["masters_for"], redis)),
        ("Redis replicas", f"{redis['replicas']}", f"as their master, "
         f"{sizing['assumptions']['redis_replicas']} per master", "failover"),
        ("Sinks", f"{sinks['sinks']}", "1 core each", _needs(sinks["sinks_for"], sinks)),
        ("ClickHouse shards", f"{ch['shards']}", f"{ch['data_per_shard_tb']:g} TB of data, "
         f"{ch['disk_per_server_tb']:g} TB disk per server", _needs(ch["shards_for"], ch)),
        ("ClickHouse replicas", f"{ch['replicas']} per shard ({ch['servers']} servers)",
         f"{cores_per_node} cores each", "failover, reads"),
    ]  # fmt: skip
    lines = ["| component | count | each | set by |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def _needs(needs: dict[str, int], part: dict[str, Any]) -> str:
    shown = ", ".join(f"{need} {count}" for need, count in needs.items())
    return f"{part['bound_by']} ({shown})"


def collect(suite: Path, analytics: Path) -> dict[str, Any]:
    """The inputs from a suite run (1 worker's CPU per scan by process, the largest memory run,
    the sink phase) and an analytics run with ``storage``, each naming its file and field."""
    suite_result = orjson.loads(suite.read_bytes())
    analytics_result = orjson.loads(analytics.read_bytes())
    [one_worker] = [r for r in suite_result["scan_path"]["by_workers"] if r["workers"] == 1]
    memory = max(suite_result["memory"], key=lambda run: run["issued_codes"])
    cpu = "scan_path.by_workers[workers=1].cpu_us_per_scan"
    largest = f"memory[issued_codes={memory['issued_codes']}]"

    def source(result: Path, field: str, figure: float) -> dict[str, Any]:
        return {"value": figure, "source": f"{result.name}: {field}"}

    inputs = {
        f"{process}_cpu_us_per_scan": source(suite, f"{cpu}.{process}", one_worker[
            "cpu_us_per_scan"][process]) for process in ("api", "redis", "sink", "clickhouse")
    }  # fmt: skip
    inputs["redis_bytes_per_scanned_code"] = source(
        suite, f"{largest}.bytes_per_scanned_code", memory["bytes_per_scanned_code"]
    )
    inputs["redis_bytes_per_issued_code"] = source(
        suite,
        f"{largest}.bitmap_bits_per_issued_code / 8",
        round(memory["bitmap_bits_per_issued_code"] / 8, 4),
    )
    inputs["sink_rows_per_s_per_shard"] = source(
        suite, "sink.rows_per_s", suite_result["sink"]["rows_per_s"]
    )
    inputs["clickhouse_bytes_per_scan_row"] = source(
        analytics,
        "storage.scans.bytes_on_disk_per_row",
        analytics_result["storage"]["scans"]["bytes_on_disk_per_row"],
    )
    return {"benchmark": "capacity-inputs", **provenance(), "inputs": inputs}


def _newest(pattern: str, has: str) -> Path:
    """The newest results file matching ``pattern`` whose JSON has the key ``has``."""
    for path in sorted(RESULTS.glob(pattern), reverse=True):
        if has in orjson.loads(path.read_bytes()):
            return path
    raise SystemExit(f"no {pattern} in {RESULTS} has {has!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gather = commands.add_parser("collect", help="write capacity-inputs-<date>.json")
    gather.add_argument("--suite", type=Path, help="default: the newest suite-*.json")
    gather.add_argument("--analytics", type=Path, help="default: the newest with storage")
    sizing = commands.add_parser("size", help="print the sizing of a target")
    sizing.add_argument("inputs", type=Path, help="a capacity-inputs JSON file")
    sizing.add_argument("--format", choices=("json", "markdown"), default="json")
    for name, default in dataclasses.asdict(Target()).items():
        sizing.add_argument(f"--{name.replace('_', '-')}", type=float, default=default)
    for name, default in dataclasses.asdict(Assumptions()).items():
        sizing.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = parser.parse_args(argv)
    if args.command == "collect":
        suite = args.suite or _newest("suite-*.json", "scan_path")
        analytics = args.analytics or _newest("analytics-*.json", "storage")
        publish(collect(suite, analytics), f"capacity-inputs-{time.strftime('%Y%m%d')}")
        return
    target = Target(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Target)})
    assume = Assumptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Assumptions)})
    result = size(orjson.loads(args.inputs.read_bytes())["inputs"], target, assume)
    if args.format == "markdown":
        sys.stdout.write(markdown(result))
    else:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()

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
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis

from benchmarks import campaign_bench
from benchmarks.api_metrics import mean_batch, scrape
from benchmarks.process_cpu import cpu_seconds, us_per_event
from benchmarks.report import provenance, publish
from benchmarks.stack import (
    SKU,
    BenchStack,
    drain_streams,
    local_stack,
    process,
    scanward,
    wait_healthy,
)
from benchmarks.wrk import run_wrk
from ingest.sink.streams import STATS_KEY


def run(args: argparse.Namespace) -> dict[str, Any]:
    with local_stack(args.codes, args.sample, args.territories, args.members) as stack:
        result = _measure(args, stack)
        result["members"] = {
            "pool": args.members,
            "by_tier": {str(t): n for t, n in stack.tiers.items() if t},
        }
        return result


def _measure(args: argparse.Namespace, stack: BenchStack) -> dict[str, Any]:
    workers, seconds, connections = args.workers, args.duration, args.connections
    url, env = stack.url, stack.env
    hello = [sys.executable, "-m", "benchmarks.hello_server", str(stack.port)]
    with process(hello, env), process(hello, env) if workers > 1 else _nothing():
        wait_healthy(url)
        run_wrk(url, env, 2, connections)  # warm-up
        ceiling = run_wrk(url, env, seconds, connections)
    serve = scanward("serve", "--workers", str(workers))
    campaign: dict[str, Any] | None = None
    with process(scanward("sink"), env) as sinking, process(serve, env) as api:
        wait_healthy(url)
        if args.campaign:
            version = campaign_bench.put_campaign(url, SKU)["version"]
            campaign = {"id": campaign_bench.CAMPAIGN_ID, "version": version}
        run_wrk(url, env, 2, connections)  # warm-up (with a campaign: its codes draw once)
        client = redis.Redis.from_url(env["SCANWARD_REDIS_URL"])
        drawn_before = campaign_bench.counters(client)
        commands_before = _command_stats(client)
        metrics_before = scrape(url)
        pids = {"api": api.pid, "sink": sinking.pid, "clickhouse": stack.clickhouse_pid}
        cpu_before = cpu_seconds(pids, client)
        peak = run_wrk(url, env, seconds, connections)
        cpu_after = cpu_seconds(pids, client)
        metrics_after = scrape(url)
        commands_at_peak = _command_stats(client, commands_before, peak["requests"])
        drawn_at_peak = campaign_bench.between(drawn_before, campaign_bench.counters(client))
        drained = drain_streams(client)
        stats = cast(dict[bytes, bytes], client.hgetall(STATS_KEY))
        sink = {name.decode(): float(value) for name, value in stats.items()}
        half_rate = peak["per_s"] // 2
        half = run_wrk(url, {**env, "SCAN_RATE": str(half_rate)}, seconds, connections)
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
        "cpu_us_per_scan": us_per_event(cpu_before, cpu_after, peak["requests"]),
        # one worker's (the one that answered /metrics): all of them when there is one
        "mean_batch_at_peak": mean_batch(metrics_before, metrics_after),
        "redis_commands_at_peak": commands_at_peak,
        "sink": {
            "stats": sink,
            "backlog_at_end_of_peak": drained["backlog_events"],
            "drain_after_peak_s": drained["drain_s"],
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

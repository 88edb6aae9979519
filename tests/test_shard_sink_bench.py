"""``benchmarks.shard_sink_bench --quick`` end to end: its report's shape, and every run's sinks
storing each of their events exactly once, on one server and on the 2 shards.

The benchmark starts a Redis and a 2-shard ClickHouse cluster of its own; the markers say which
servers it needs.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from benchmarks.shard_sink_bench import COUPLES, QUICK_EVENTS, RATIOS
from tests.bench_support import REPO

RUN_LIMIT_S = 120

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse_cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.shard_sink_bench", "--quick", "--no-save"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, timeout=RUN_LIMIT_S, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = orjson.loads(run.stdout)
    return result


def test_one_pair_of_every_couple_with_its_ratio(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "shard_sink"
    assert report["quick"] is True
    assert report["events_per_sink"] == QUICK_EVENTS
    [pair] = report["pairs"]
    assert pair["order"] == [name for couple in COUPLES for name in couple]
    for ratio, (single, sharded) in RATIOS.items():
        expected = round(pair[sharded]["rows_per_s"] / pair[single]["rows_per_s"], 3)
        assert pair[ratio] == expected
        assert report[f"{ratio}s"] == [expected]
        assert report[f"median_{ratio}"] == expected
    assert report["goal_met"] == (report["median_ratio"] >= report["goal"])


def test_every_run_stored_its_events_exactly_once(report: dict[str, Any]) -> None:
    assert report["stored_exactly_once"] is True
    [pair] = report["pairs"]
    for name in pair["order"]:
        run = pair[name]
        databases = run["redis_databases"]
        sinks = 2 if name.startswith("two_") else 1
        assert sum(database["sinks"] for database in databases) == sinks, name
        assert run["rows_per_s"] == sum(database["rows_per_s"] for database in databases)
        for database in databases:
            stored = database["stored"]
            assert stored["rows"] == stored["distinct"] == database["events"], (name, database)
            assert database["exit_codes"] == [0] * database["sinks"], (name, database)
            if "sharded" in name:  # every partition's rows on its shard: half on each
                assert stored["shard_rows"] == [database["events"] // 2] * 2, (name, database)
    assert pair["two_sharded"]["redis_databases"][0]["events"] == 2 * QUICK_EVENTS

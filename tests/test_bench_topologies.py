"""``scanward bench --cluster-masters``: its refusals, its goal, and the topology phase run small.

The phase starts servers of its own (one Redis node, a Redis Cluster and a ClickHouse, not the
session's), so its test carries only the slow marker. It checks what the phase reports and that
the figures add up, not their values: those belong to the benchmark itself.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks import suite, suite_report, topologies
from benchmarks.progress import Progress
from benchmarks.report import provenance
from ingest.cli import main

NOT_MEASURED: dict[str, Any] = {
    "scan_path": {"ceiling_ratio": None, "open_loop": []},
    "bulk_ingest": {},
    "sink": {},
    "memory": [],
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--cluster-masters", "2"], "--cluster-masters needs 3 or more"),
        (["--cluster-masters", "3", "--cluster-pairs", "0"], "--cluster-pairs needs 1 or more"),
        (
            ["--cluster-masters", "3", "--url", "http://127.0.0.1:8080", "--codes-file", "x"],
            "not with --url",
        ),
    ],
)
def test_bench_refuses_a_cluster_it_cannot_measure(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *arguments]) == 1
    assert message in capsys.readouterr().err


def test_the_cluster_goal_is_listed_only_when_a_cluster_was_measured() -> None:
    assert "cluster_redis_cpu_ratio" not in {goal["id"] for goal in suite.goals(NOT_MEASURED)}
    measured = {**NOT_MEASURED, "topologies": {"masters": 3, "redis_cpu_ratio": 1.2}}
    goal = suite.goals(measured)[-1]
    assert (goal["id"], goal["value"], goal["target"], goal["met"]) == (
        "cluster_redis_cpu_ratio",
        1.2,
        1.15,
        False,
    )


@pytest.mark.slow
def test_the_quick_cluster_topology_reports_each_master_of_each_pair(tmp_path: Path) -> None:
    options = replace(suite.SuiteOptions.quick(), cluster_masters=3)
    section = topologies.run(suite.topology_plan(options), Progress())

    [single] = section["nodes"]["single"]
    assert single["slots"] == "all"
    masters = section["nodes"]["cluster"]
    assert [node["slots"] for node in masters] == ["0-5460", "5461-10922", "10923-16383"]
    pairs = section["pairs"]
    assert [pair["order"] for pair in pairs] == [["single", "cluster"], ["cluster", "single"]]
    for pair in pairs:
        for name, nodes in (("single", [single]), ("cluster", masters)):
            run = pair[name]
            assert run["load"]["requests"] > 0
            assert run["load"]["errors"] == run["load"]["non_2xx"] == 0
            redis_us = run["redis_us_per_scan"]
            assert list(redis_us) == [node["address"] for node in nodes]
            assert all(micros > 0 for micros in redis_us.values())
            assert run["redis_us_per_scan_sum"] == pytest.approx(sum(redis_us.values()), abs=0.1)
            assert run["api_us_per_scan"] > 0
        single_us, cluster_us = (
            pair[name]["redis_us_per_scan_sum"] for name in ("single", "cluster")
        )
        assert pair["redis_cpu_ratio"] == pytest.approx(cluster_us / single_us, abs=1e-3)
    ratios = [pair["redis_cpu_ratio"] for pair in pairs]
    assert section["redis_cpu_ratio"] == pytest.approx(statistics.median(ratios), abs=1e-3)
    assert set(section["median"]["cluster"]["redis_us_per_scan"]) == {
        node["address"] for node in masters
    }

    result = {
        **NOT_MEASURED,
        "benchmark": "suite",
        **provenance(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "topologies": section,
    }
    result["goals"] = suite.goals(result)
    markdown = suite_report.write_report(result, tmp_path / "suite")[0].read_text()
    assert "## Redis: one node and a cluster of 3 masters" in markdown
    assert "| Pair | Order | One node Redis µs/scan | Master 1 µs/scan |" in markdown
    assert "| 2 | cluster, single |" in markdown
    assert "| **median** |" in markdown
    assert "Redis CPU per scan, 3 masters' sum / one node (median)" in markdown

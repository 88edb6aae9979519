"""The cluster cost benchmark, quick: a Redis node and a cluster of 3 masters of its own (started
and stopped by the benchmark), the scan path's two round trips driven straight through
``ScriptRunner`` at two micro-batch sizes under both fsync policies, one pair of runs each.

The run checks what the report holds, not the ratios: runs this small are a few clock ticks of
Redis CPU. What does not depend on timing is checked exactly: both topologies ran the same
micro-batches (the same script calls and bytes), and a cluster's micro-batch is read by Redis in
more pieces (a round trip per master)."""

from __future__ import annotations

import orjson
import pytest

from benchmarks import cluster_cost

pytestmark = [pytest.mark.redis, pytest.mark.cluster, pytest.mark.slow]


def test_the_quick_run_reports_each_size_and_policy_for_one_node_and_3_masters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster_cost.main(["--quick", "--no-save"])

    printed = orjson.loads(capsys.readouterr().out)
    plan = cluster_cost.QUICK
    assert printed["benchmark"] == "cluster_cost"
    assert printed["quick"] is True
    assert printed["git_commit"]
    assert printed["plan"]["sizes"] == list(plan.sizes)
    assert [len(printed["nodes"][name]) for name in ("single", "cluster")] == [1, plan.masters]
    assert all(n == 0 for rewrites in printed["aof_rewrites"].values() for n in rewrites.values())
    cells = [
        (row["appendfsync"], row["load"], row["scans_per_micro_batch"]) for row in printed["table"]
    ]
    assert cells == [
        (policy, load, size)
        for policy in plan.policies
        for load in plan.loads
        for size in plan.sizes
    ]
    for row in printed["table"]:
        assert len(row["cluster_us_per_scan_by_master"]) == plan.masters
        assert len(row["ratios"]) == plan.pairs
        assert row["single_us_per_scan"] >= 0
        assert row["cluster_us_per_scan_sum"] == pytest.approx(
            sum(row["cluster_us_per_scan_by_master"]), abs=0.2
        )
    for cell in printed["cells"]:
        for pair in cell["pairs"]:
            single, cluster = pair["single"], pair["cluster"]
            if cell["load"] == "per_master":  # whole micro-batches three times larger
                assert plan.scans - cell["scans_per_micro_batch"] * plan.masters < cluster["scans"]
                continue
            assert single["scans"] == cluster["scans"] == plan.scans
            assert single["per_scan"]["evalsha_calls"] == cluster["per_scan"]["evalsha_calls"] > 0
            assert single["per_scan"]["total_net_input_bytes"] == pytest.approx(
                cluster["per_scan"]["total_net_input_bytes"], rel=0.01
            )
            reads = "total_reads_processed"
            assert cluster["per_scan"][reads] > single["per_scan"][reads] > 0

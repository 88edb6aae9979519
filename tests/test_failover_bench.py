"""``benchmarks.failover_bench --quick`` end to end: a primary of a Redis Cluster (3 primaries,
one replica each) killed -9 under load once with WAIT off and once with WAIT on, then one pair
of WAIT's cost.

The benchmark starts servers of its own; the markers say which it needs. No scan may be
answered 500 (a primary down is a 503); with WAIT on (every replica) no answered scan may be
lost, counted twice as a first scan, or give a prize beyond a budget or a daily cap. With WAIT
off a failover may lose what the replica had not yet received: only the report's shape and the
statuses are asserted for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench_support import assert_faulted_round, quick_report
from tests.test_crash_bench import NOTHING_LOST

RUN_LIMIT_S = 180

pytestmark = [pytest.mark.cluster, pytest.mark.clickhouse, pytest.mark.slow]

SETTINGS = ("wait_off", "wait_on")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return quick_report("benchmarks.failover_bench", RUN_LIMIT_S)


def test_wait_on_loses_no_answered_scan_and_gives_no_prize_twice(report: dict[str, Any]) -> None:
    waiting = report["settings"]["wait_on"]
    assert waiting["wait_replicas"] == 1
    assert {key: waiting["totals"][key] for key in NOTHING_LOST} == dict.fromkeys(NOTHING_LOST, 0)


def test_no_scan_was_answered_500(report: dict[str, Any]) -> None:
    for setting in SETTINGS:
        statuses = report["settings"][setting]["statuses"]
        assert set(statuses) <= {"200", "503"}, (setting, statuses)
        assert statuses["200"] > 0


def test_each_setting_lost_a_primary_under_load_and_answered_after_its_failover(
    report: dict[str, Any],
) -> None:
    assert report["cluster"] == {"primaries": 3, "replicas_per_primary": 1, "node_timeout_ms": 2000}
    assert [row["setting"] for row in report["table"]] == list(SETTINGS)
    for setting in SETTINGS:
        result = report["settings"][setting]
        [kill] = result["kills"]
        assert kill["kill"]["failover_s"] > 0, kill  # a replica took the slots over
        assert kill["kill"]["taken_over_by"] != kill["kill"]["primary"], kill
        assert kill["restart"]["replicas_back_s"] >= kill["kill"]["cluster_ok_s"], kill
        assert_faulted_round(kill, result["drain"])


def test_the_cost_pair_reports_ratios(report: dict[str, Any]) -> None:
    cost = report["wait_cost"]
    for name in ("peak_per_s", "fixed_rate_p50_ms", "fixed_rate_p99_ms"):
        assert len(cost["ratio_on_to_off"][name]) == 1
        assert cost["median_ratio_on_to_off"][name] > 0
    for setting in SETTINGS:
        [run] = cost["runs"][setting]
        assert run["peak"]["errors"] == 0, run
        assert run["half_load"]["errors"] == 0, run

"""``benchmarks.crash_bench --quick`` end to end: Redis killed -9 under load and restarted from
its AOF, once per fsync policy, then one throughput pair.

The benchmark starts servers of its own; the markers say which it needs. Under ``always`` no
answered scan may be lost, counted twice as a first scan, or give a prize beyond a budget or a
daily cap. Under ``everysec`` the quick run's kill is aimed at a background AOF fsync, when Redis
answers writes it has not yet written to its file: losing a few of them there is what the
benchmark shows (deploy/README.md, Durability), so only what holds whatever Redis lost is
asserted for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bench_support import assert_faulted_round, quick_report

RUN_LIMIT_S = 300

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]

NOTHING_LOST = (
    "lost_in_clickhouse",
    "stored_twice_in_clickhouse",
    "lost_in_redis",
    "undercounted_in_redis",
    "double_first_scans",
    "prizes_over_budget",
    "prizes_over_budget_clickhouse",
    "prizes_over_budget_redis",
    "prizes_lost_in_clickhouse",
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return quick_report("benchmarks.crash_bench", RUN_LIMIT_S)


def test_always_loses_no_answered_scan_and_gives_no_prize_twice(report: dict[str, Any]) -> None:
    always = report["policies"]["always"]
    assert always["appendfsync"] == "always"
    assert {key: always["totals"][key] for key in NOTHING_LOST} == dict.fromkeys(NOTHING_LOST, 0)


def test_each_policy_was_killed_under_load_and_answered_again_after_its_restart(
    report: dict[str, Any],
) -> None:
    assert [row["appendfsync"] for row in report["table"]] == ["everysec", "always"]
    for policy, result in report["policies"].items():
        assert result["appendfsync"] == policy
        [kill] = result["kills"]
        assert kill["kill"]["mode"] == "during_fsync"
        assert_faulted_round(kill, result["drain"])


def test_everysec_losses_come_from_redis_alone(report: dict[str, Any]) -> None:
    """A scan missing from ClickHouse is missing from Redis too: its state, event and retry
    record are written by one script, and the sink stores every event Redis still holds."""
    for kill in report["policies"]["everysec"]["kills"]:
        assert kill["lost_in_clickhouse"] <= kill["lost_in_redis"], kill


def test_the_throughput_pair_reports_a_ratio(report: dict[str, Any]) -> None:
    throughput = report["throughput"]
    assert len(throughput["ratio_always_to_everysec"]) == 1
    assert throughput["median_ratio"] > 0
    for policy in ("everysec", "always"):
        [run] = throughput["runs"][policy]
        assert run["peak"]["errors"] == 0, run
        assert run["peak"]["non_2xx"] == 0, run

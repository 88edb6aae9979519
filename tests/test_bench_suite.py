"""``scanward bench``: its goals, its refusals, and the whole suite run small.

The suite starts servers of its own (not the session's), so these tests carry no server marker.
The run checks that every phase works and reports what it should, not its figures: speed goals
belong to the benchmark itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import suite, suite_report
from benchmarks.compare import compare
from benchmarks.progress import Progress
from ingest.cli import main

STAGES = ("parse", "verify", "fraud", "record", "redis_client", "rewards", "respond")


def _memory(issued: int, bytes_per_scanned: float, bits_per_issued: float) -> dict[str, Any]:
    return {
        "issued_codes": issued,
        "bytes_per_scanned_code": bytes_per_scanned,
        "bitmap_bits_per_issued_code": bits_per_issued,
    }


def _measured(ceiling_ratio: float, half_p99_ms: float) -> dict[str, Any]:
    open_loop = [{"fraction": 0.25, "p99_ms": 1.0}, {"fraction": 0.5, "p99_ms": half_p99_ms}]
    return {
        "scan_path": {"ceiling_ratio": ceiling_ratio, "open_loop": open_loop},
        "bulk_ingest": {"events_per_s": 250_000},
        "sink": {"ratio": 0.5},
        "memory": [_memory(1_000_000, 80.0, 1.2), _memory(10_000_000, 90.0, 1.0)],
    }


def test_goals_compare_each_value_with_its_target_in_its_direction() -> None:
    goals = {goal["id"]: goal for goal in suite.goals(_measured(0.5, 12.0))}
    assert [goals[name]["met"] for name in goals] == [False, False, True, False, True, True]
    assert goals["scan_ceiling_ratio"]["value"] == 0.5
    assert goals["p99_at_half_peak_ms"]["better"] == "lower"
    # the largest number of issued codes is the one measured against the goals
    assert goals["redis_bytes_per_scanned_code"]["value"] == 90.0


def test_a_phase_that_did_not_run_is_not_measured_rather_than_missed() -> None:
    result = {**_measured(0.7, 5.0), "bulk_ingest": {}, "memory": []}
    result["scan_path"]["open_loop"] = []
    goals = {goal["id"]: goal for goal in suite.goals(result)}
    assert goals["scan_ceiling_ratio"]["met"] is True
    for name in ("p99_at_half_peak_ms", "bulk_events_per_s", "redis_bytes_per_scanned_code"):
        assert goals[name]["value"] is None
        assert goals[name]["met"] is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--url", "http://10.0.0.8:8080", "--codes-file", "x"], "only http://127.0.0.1"),
        (["--url", "http://127.0.0.1:8080"], "--url needs --codes-file"),
    ],
)
def test_bench_refuses_other_hosts_and_a_url_without_codes(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *arguments]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_quick_suite_runs_every_phase_and_reports_it(tmp_path: Path) -> None:
    result = suite.run(suite.SuiteOptions.quick(), Progress())

    [one_worker] = result["scan_path"]["by_workers"]
    for load in (one_worker["ceiling"], one_worker["peak"]):
        assert load["requests"] > 0
        assert load["errors"] == load["non_2xx"] == 0
    assert set(one_worker["cpu_us_per_scan"]) == {"api", "redis", "sink", "clickhouse"}
    assert one_worker["ceiling"]["cpu_us_per_request"] > 0
    open_loop = result["scan_path"]["open_loop"]
    assert [row["fraction"] for row in open_loop] == [0.25, 0.5, 0.75, 0.9]
    for row in open_loop:
        assert row["completed"] == row["sent"] > 0
        assert row["errors"] == row["non_2xx"] == 0
    stages = result["scan_path"]["stages_us_per_scan"]
    assert set(STAGES) <= set(stages)
    assert all(stages[name] > 0 for name in ("parse", "verify", "fraud", "record", "respond"))
    assert {"http_and_loop", "redis_server", "sink", "clickhouse"} <= set(stages)
    bulk = result["bulk_ingest"]
    assert bulk["events"] > 0
    assert bulk["non_2xx"] == 0
    assert bulk["ceiling_events_per_s"] > 0
    assert result["sink"]["ratio"] > 0
    assert result["sink"]["at_scan_peak"]["drain_s"] >= 0
    [memory] = result["memory"]
    assert memory["issued_codes"] == 100_000
    assert all(goal["value"] is not None for goal in result["goals"])
    assert result["machine"]["redis"].startswith("7.")  # the server's, as Debian packages it
    assert result["machine"]["clickhouse"][:2].isdigit()

    written = suite_report.write_report(result, tmp_path / "suite")
    assert {path.suffix for path in written} == {".md", ".png"}
    assert all(row.verdict == "same" for row in compare(result, result))

"""The suite's Markdown report and charts, and the comparison of two runs (no servers: the
results are built here)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks.compare import Comparison, compare, format_comparison
from benchmarks.number_format import TIMES
from benchmarks.suite_report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _latency(per_s: float, p50_ms: float, p99_ms: float) -> dict[str, Any]:
    return {
        "requests": int(per_s * 10),
        "seconds": 10.0,
        "per_s": per_s,
        "errors": 0,
        "non_2xx": 0,
        "p50_ms": p50_ms,
        "p90_ms": p50_ms * 1.5,
        "p99_ms": p99_ms,
        "p999_ms": p99_ms * 1.8,
        "max_ms": p99_ms * 4,
    }


def _by_workers(workers: int, ceiling_per_s: float, peak_per_s: float) -> dict[str, Any]:
    return {
        "workers": workers,
        "ceiling_per_s": ceiling_per_s,
        "peak_per_s": peak_per_s,
        "ceiling_ratio": round(peak_per_s / ceiling_per_s, 3),
        "ceiling": _latency(ceiling_per_s, 2.1, 5.2),
        "peak": _latency(peak_per_s, 3.4, 8.8),
        "cpu_us_per_scan": {"api": 90.0, "redis": 40.0, "sink": 10.0, "clickhouse": 5.0},
    }


def _open_loop(fraction: float, peak_per_s: float, p99_ms: float) -> dict[str, Any]:
    offered = fraction * peak_per_s
    return {
        "fraction": fraction,
        "offered_per_s": offered,
        "achieved_per_s": offered - 1,
        "sent": int(offered * 10),
        "completed": int(offered * 10),
        "errors": 0,
        "non_2xx": 0,
        "p50_ms": p99_ms / 4,
        "p90_ms": p99_ms / 2,
        "p99_ms": p99_ms,
        "p999_ms": p99_ms * 2,
        "max_ms": p99_ms * 4,
        "mean_ms": p99_ms / 3,
        "queued_max": 3,
    }


def _memory(issued_codes: int, used_memory_delta_bytes: int) -> dict[str, Any]:
    scanned = issued_codes // 20
    return {
        "issued_codes": issued_codes,
        "scanned_codes": scanned,
        "scanned_fraction": 0.05,
        "used_memory_delta_bytes": used_memory_delta_bytes,
        "bytes_per_scanned_code": used_memory_delta_bytes / scanned,
        "record_bytes_per_scanned_code": 60.0,
        "bitmap_bits_per_issued_code": 1.06,
        "stream_bytes_per_unsunk_event": 300.0,
    }


GOAL_KEYS = ("id", "description", "value", "target", "better", "met", "unit")
GOALS = [
    ("scan_ceiling_ratio", "full scan path / hello-world ceiling, 1 worker", 0.44, 0.6, "higher",
     False, ""),
    ("p99_at_half_peak_ms", "open-loop p99 at 50% of peak", 4.0, 10, "lower", True, "ms"),
    ("bulk_events_per_s", "bulk ingest", 90_000, 100_000, "higher", False, "events/s"),
    ("sink_ratio", "sink / raw ClickHouse insert", None, 0.3, "higher", None, ""),
    ("redis_bytes_per_scanned_code", "Redis bytes per scanned code", 310.0, 100, "lower", False,
     "B"),
    ("redis_bits_per_unscanned_code", "Redis bits per unscanned code", 1.06, 1.5, "lower", True,
     "bit"),
]  # fmt: skip


def example_result() -> dict[str, Any]:
    """A complete suite result: every section measured, some goals met and some missed."""
    return {
        "benchmark": "suite",
        "git_commit": "abc1234",
        "machine": {
            "cpus": 2,
            "python": "3.11.2",
            "kernel": "6.1.0",
            "redis": "7.0.15",
            "clickhouse": "18.16.1",
            "aiohttp": "3.9.5",
            "uvloop": "0.19.0",
        },
        "started_at": "2026-11-23T20:40:00Z",
        "seconds": 312.4,
        "options": {
            "duration_s": 10,
            "connections": 64,
            "codes": 1_000_000,
            "territories": 1_000,
            "members": 100_000,
            "campaign": True,
            "workers": [1, 2],
        },
        "scan_path": {
            "by_workers": [_by_workers(1, 25_000, 11_000), _by_workers(2, 46_000, 19_500)],
            "ceiling_ratio": 0.44,
            "open_loop": [
                _open_loop(0.25, 11_000, 2.5),
                _open_loop(0.5, 11_000, 4.0),
                _open_loop(0.75, 11_000, 9.0),
                _open_loop(0.9, 11_000, 31.0),
            ],
            "stages_us_per_scan": {
                "parse": 5.1,
                "verify": 3.2,
                "fraud": 12.0,
                "record": 4.0,
                "redis_client": 6.0,
                "rewards": 8.0,
                "respond": 4.0,
                "http_and_loop": 50.0,
                "redis_server": 40.0,
                "sink": 10.0,
                "clickhouse": 5.0,
            },
        },
        "bulk_ingest": {
            "events_per_s": 90_000,
            "ceiling_events_per_s": 400_000,
            "ceiling_ratio": 0.22,
            "lines_per_request": 2_000,
            "requests": 100,
            "cpu_us_per_event": {"api": 8.0, "redis": 4.0},
        },
        "codes": {
            "hmac_ceiling_per_s": 1_200_000,
            "generate_per_s_one_core": 700_000,
            "generate_per_s_all_cores": 1_300_000,
            "verify_per_s_one_core": 450_000,
        },
        "sink": {
            "events": 200_000,
            "rows_per_s": 150_000,
            "raw_rows_per_s": 400_000,
            "ratio": 0.37,
            "decode_rows_per_s": 900_000,
        },
        "memory": [_memory(1_000_000, 3_500_000), _memory(10_000_000, 36_000_000)],
        "goals": [dict(zip(GOAL_KEYS, goal, strict=True)) for goal in GOALS],
    }


def _goal_line(markdown: str, description: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {description} |"))


def test_the_report_writes_markdown_and_three_charts(tmp_path: Path) -> None:
    stem = tmp_path / "suite-20261123-204000"
    written = write_report(example_result(), stem)
    charts = [tmp_path / f"{stem.name}-{name}.png" for name in ("latency", "workers", "memory")]
    assert sorted(written) == sorted([tmp_path / f"{stem.name}.md", *charts])
    for chart in charts:
        assert chart.read_bytes().startswith(PNG_SIGNATURE)
        assert chart.stat().st_size > 10_000
    markdown = (tmp_path / f"{stem.name}.md").read_text(encoding="utf-8")
    for chart in charts:
        assert f"]({chart.name})" in markdown


def test_the_goals_table_says_which_goals_are_met_and_by_how_much(tmp_path: Path) -> None:
    markdown = write_report(example_result(), tmp_path / "suite")[0].read_text(encoding="utf-8")
    assert "| Goal | Target | Measured | Met | Shortfall |" in markdown
    assert "| ≥ 0.6 | 0.44 | ✗ | 27% short |" in _goal_line(
        markdown, "full scan path / hello-world ceiling, 1 worker"
    )
    assert "| ≤ 10 ms | 4 ms | ✓ |  |" in _goal_line(markdown, "open-loop p99 at 50% of peak")
    assert "| 90,000 events/s | ✗ | 10% short |" in _goal_line(markdown, "bulk ingest")
    assert f"| 310 B | ✗ | 3.1{TIMES} over |" in _goal_line(
        markdown, "Redis bytes per scanned code"
    )
    assert "| not measured |" in _goal_line(markdown, "sink / raw ClickHouse insert")


def test_a_maximum_missed_by_little_says_by_what_share(tmp_path: Path) -> None:
    result = example_result()
    [bits] = [goal for goal in result["goals"] if goal["id"] == "redis_bits_per_unscanned_code"]
    bits.update(value=1.02, target=1, met=False)
    markdown = write_report(result, tmp_path / "suite")[0].read_text(encoding="utf-8")
    assert "| 1.02 bit | ✗ | 2% over |" in markdown


def test_unmeasured_sections_write_only_the_markdown(tmp_path: Path) -> None:
    result = example_result()
    for section in ("scan_path", "bulk_ingest", "codes", "sink", "memory"):
        result[section] = None
    written = write_report(result, tmp_path / "suite")
    assert written == [tmp_path / "suite.md"]
    assert list(tmp_path.glob("*.png")) == []
    markdown = written[0].read_text(encoding="utf-8")
    assert markdown.count("not measured in this run") == 7
    assert "| Goal |" in markdown


def _scaled(result: dict[str, Any], path: tuple[str | int, ...], factor: float) -> None:
    """Multiplies the figure at ``path`` (keys and list indexes) in place."""
    *parents, last = path
    container: Any = result
    for key in parents:
        container = container[key]
    container[last] *= factor


def _by_metric(rows: list[Comparison]) -> dict[str, Comparison]:
    return {row.metric: row for row in rows}


def test_compare_judges_changes_by_their_good_direction() -> None:
    old = example_result()
    new = copy.deepcopy(old)
    _scaled(new, ("scan_path", "by_workers", 0, "ceiling_ratio"), 0.8)
    _scaled(new, ("scan_path", "stages_us_per_scan", "fraud"), 0.8)
    _scaled(new, ("sink", "ratio"), 1.03)
    rows = _by_metric(compare(new, old))
    ceiling_ratio = rows["scan_path.by_workers[workers=1].ceiling_ratio"]
    assert (ceiling_ratio.verdict, ceiling_ratio.better) == ("worse", "higher")
    assert ceiling_ratio.ratio == pytest.approx(0.8)
    assert rows["scan_path.stages_us_per_scan.fraud"].verdict == "better"
    assert rows["sink.ratio"].verdict == "same"
    assert rows["codes.hmac_ceiling_per_s"].verdict == "same"
    assert rows["codes.generate_per_s_one_core"].verdict == "same"
    table = format_comparison(list(rows.values()))
    ceiling_line = next(line for line in table.splitlines() if "workers=1].ceiling_ratio" in line)
    assert ceiling_line.endswith("REGRESSION")


def test_compare_skips_figures_missing_on_either_side() -> None:
    old = example_result()
    new = copy.deepcopy(old)
    new["sink"] = None
    del new["codes"]["verify_per_s_one_core"]
    old["memory"] = None
    new["goals"][0]["value"] = None
    metrics = set(_by_metric(compare(new, old)))
    assert "sink.ratio" not in metrics
    assert "codes.verify_per_s_one_core" not in metrics
    assert not any(metric.startswith("memory") for metric in metrics)
    assert "goals.scan_ceiling_ratio" not in metrics
    assert "goals.bulk_events_per_s" in metrics


def test_the_comparison_table_lists_ratios_first_and_names_every_metric() -> None:
    result = example_result()
    rows = compare(result, result)
    assert rows[0].metric.endswith("ratio")
    ratio_rows = [row.metric.endswith("ratio") for row in rows]
    assert ratio_rows == sorted(ratio_rows, reverse=True)
    table = format_comparison(rows)
    assert "noisy on shared machines" in table
    for row in rows:
        assert row.metric in table
    assert "REGRESSION" not in table

"""Two suite results side by side: which figures moved beyond the noise, and which way.

``compare(new, old)`` pairs every figure both runs measured; ``format_comparison`` prints them
as a plain-text table, ratios to a same-run ceiling first since they survive a noisy machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from benchmarks.number_format import TIMES, human_number

Direction = Literal["higher", "lower"]
Verdict = Literal["better", "worse", "same"]
Metric = tuple[str, Any, Direction]

NOISE_NOTE = (
    "Rates (/s) are noisy on shared machines; ratios to a ceiling measured in the same run "
    "compare better, so they come first."
)
HEADER = ("metric", "old", "new", "new/old", "better", "verdict")


@dataclass(frozen=True)
class Comparison:
    """One figure in both runs: ``ratio`` is new/old, ``better`` the good direction."""

    metric: str
    old: float
    new: float
    ratio: float
    better: Direction
    verdict: Verdict


def compare(new: dict[str, Any], old: dict[str, Any], threshold: float = 0.10) -> list[Comparison]:
    """Every figure measured in both runs; beyond ``threshold`` (0.10: 10%) a change counts."""
    old_metrics = _numeric_metrics(old)
    rows = [
        _comparison(name, old_metrics[name][0], value, better, threshold)
        for name, (value, better) in _numeric_metrics(new).items()
        if name in old_metrics
    ]
    return sorted(rows, key=lambda row: not row.metric.endswith("ratio"))  # stable: ratios first


def format_comparison(rows: list[Comparison]) -> str:
    """A plain-text table; a change for the worse beyond the threshold reads REGRESSION."""
    table = [HEADER, *(_cells(row) for row in rows)]
    widths = [max(len(cells[column]) for cells in table) for column in range(len(HEADER))]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in table
    ]
    regressions = sum(row.verdict == "worse" for row in rows)
    summary = f"{regressions} regression(s) among {len(rows)} figures measured in both runs."
    return "\n".join([NOISE_NOTE, "", *lines, "", summary]) + "\n"


def _cells(row: Comparison) -> tuple[str, ...]:
    verdict = "REGRESSION" if row.verdict == "worse" else row.verdict
    ratio = f"{row.ratio:.2f}{TIMES}"
    return (row.metric, human_number(row.old), human_number(row.new), ratio, row.better, verdict)


def _comparison(
    metric: str, old: float, new: float, better: Direction, threshold: float
) -> Comparison:
    ratio = new / old if old else math.inf if new else 1.0
    return Comparison(metric, old, new, ratio, better, _verdict(ratio, better, threshold))


def _verdict(ratio: float, better: Direction, threshold: float) -> Verdict:
    if abs(ratio - 1) <= threshold:
        return "same"
    return "better" if (ratio > 1) == (better == "higher") else "worse"


def _numeric_metrics(result: dict[str, Any]) -> dict[str, tuple[float, Direction]]:
    """The comparable figures of a result by name; missing or null ones are left out."""
    return {
        name: (float(value), better)
        for name, value, better in _metrics(result)
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _metrics(result: dict[str, Any]) -> Iterator[Metric]:
    yield from _goal_metrics(result.get("goals") or [])
    yield from _scan_path_metrics(result.get("scan_path") or {})
    bulk_ingest = result.get("bulk_ingest") or {}
    yield "bulk_ingest.events_per_s", bulk_ingest.get("events_per_s"), "higher"
    yield "bulk_ingest.ceiling_ratio", bulk_ingest.get("ceiling_ratio"), "higher"
    yield "sink.ratio", (result.get("sink") or {}).get("ratio"), "higher"
    for key, rate in (result.get("codes") or {}).items():
        if "_per_s" in key:  # generate_per_s_one_core as well as hmac_ceiling_per_s
            yield f"codes.{key}", rate, "higher"
    yield from _memory_metrics(result.get("memory") or [])


def _goal_metrics(goals: list[dict[str, Any]]) -> Iterator[Metric]:
    for goal in goals:
        yield f"goals.{goal['id']}", goal.get("value"), goal["better"]


def _scan_path_metrics(scan_path: dict[str, Any]) -> Iterator[Metric]:
    for run in scan_path.get("by_workers") or []:
        name = f"scan_path.by_workers[workers={run['workers']}]"
        yield f"{name}.ceiling_ratio", run.get("ceiling_ratio"), "higher"
        yield f"{name}.peak_per_s", run.get("peak_per_s"), "higher"
    for run in scan_path.get("open_loop") or []:
        yield (
            f"scan_path.open_loop[fraction={run['fraction']:g}].p99_ms",
            run.get("p99_ms"),
            "lower",
        )
    for stage, micros in (scan_path.get("stages_us_per_scan") or {}).items():
        yield f"scan_path.stages_us_per_scan.{stage}", micros, "lower"


def _memory_metrics(memory: list[dict[str, Any]]) -> Iterator[Metric]:
    for row in memory:
        name = f"memory[issued_codes={row['issued_codes']}]"
        yield f"{name}.bytes_per_scanned_code", row.get("bytes_per_scanned_code"), "lower"
        yield f"{name}.bitmap_bits_per_issued_code", row.get("bitmap_bits_per_issued_code"), "lower"

"""The suite's JSON result for people: a Markdown summary beside PNG charts.

``write_report(result, stem)`` writes ``<stem>.md`` and, for each section the run measured,
``<stem>-latency.png``, ``<stem>-workers.png`` and ``<stem>-memory.png``. Charts are drawn on
matplotlib's object API with the Agg canvas: no display and no pyplot global state.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from benchmarks.number_format import TIMES, human_number

NOT_MEASURED = "*not measured in this run*"
LATENCY_GOAL_ID = "p99_at_half_peak_ms"
DEFAULT_LATENCY_GOAL_MS = 10.0
PERCENTILES = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
MACHINE_LABELS = {"python": "Python", "redis": "Redis", "clickhouse": "ClickHouse"}
LABEL_WORDS = {"us": "µs", "cpu": "CPU", "hmac": "HMAC"}
TOPOLOGY_MEDIANS_HEADER = (
    *("Topology (medians)", "Scans/s", "Redis CPU µs/scan", "API CPU µs/scan"),
    *("Sink CPU µs/scan", "AOF rewrites"),
)
THOUSANDS = StrMethodFormatter("{x:,.0f}")
PLAIN = StrMethodFormatter("{x:g}")


def write_report(result: dict[str, Any], stem: Path) -> list[Path]:
    """``<stem>.md`` and the charts of the measured sections; returns the paths written."""
    charts = _write_charts(result, stem)
    markdown = stem.with_name(f"{stem.name}.md")
    markdown.write_text(_markdown(result, charts), encoding="utf-8")
    return [markdown, *charts.values()]


# Charts


def _write_charts(result: dict[str, Any], stem: Path) -> dict[str, Path]:
    scan_path = result.get("scan_path") or {}
    figures = {
        "latency": _latency_figure(scan_path.get("open_loop"), _latency_goal_ms(result)),
        "workers": _workers_figure(scan_path.get("by_workers")),
        "memory": _memory_figure(result.get("memory")),
    }
    written: dict[str, Path] = {}
    for name, figure in figures.items():
        if figure is not None:
            written[name] = stem.with_name(f"{stem.name}-{name}.png")
            figure.savefig(written[name], dpi=110)
    return written


def _new_figure(columns: int = 1) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(6.5 * columns, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure: savefig renders with Agg
    return figure, [figure.add_subplot(1, columns, column + 1) for column in range(columns)]


def _latency_goal_ms(result: dict[str, Any]) -> float:
    goals = result.get("goals") or []
    targets = [goal["target"] for goal in goals if goal["id"] == LATENCY_GOAL_ID]
    return float(targets[0]) if targets else DEFAULT_LATENCY_GOAL_MS


def _latency_figure(open_loop: list[dict[str, Any]] | None, goal_ms: float) -> Figure | None:
    if not open_loop:
        return None
    figure, (axes,) = _new_figure()
    offered = [run["offered_per_s"] for run in open_loop]
    for key, label in PERCENTILES:
        axes.plot(offered, [run[key] for run in open_loop], marker="o", label=label)
    axes.axhline(goal_ms, linestyle="--", color="grey", label=f"goal: p99 ≤ {goal_ms:g} ms")
    axes.set_yscale("log")
    axes.xaxis.set_major_formatter(THOUSANDS)
    axes.set(
        title="Scan latency vs offered load (open loop)",
        xlabel="offered scans/s",
        ylabel="latency, ms",
    )
    axes.grid(which="both", alpha=0.3)
    axes.legend()
    return figure


def _workers_figure(by_workers: list[dict[str, Any]] | None) -> Figure | None:
    if not by_workers:
        return None
    figure, (axes,) = _new_figure()
    width = 0.38
    positions = range(len(by_workers))
    axes.bar(
        [position - width / 2 for position in positions],
        [run["ceiling_per_s"] for run in by_workers],
        width,
        label="hello-world ceiling",
    )
    scan_bars = axes.bar(
        [position + width / 2 for position in positions],
        [run["peak_per_s"] for run in by_workers],
        width,
        label="scan path",
    )
    ratios = [f"{run['ceiling_ratio']:.0%} of ceiling" for run in by_workers]
    axes.bar_label(scan_bars, labels=ratios, padding=3)
    axes.set_xticks(list(positions), [_workers_label(run["workers"]) for run in by_workers])
    axes.yaxis.set_major_formatter(THOUSANDS)
    axes.set(title="Throughput vs workers", ylabel="requests/s")
    axes.legend()
    return figure


def _workers_label(workers: int) -> str:
    return f"{workers} worker" if workers == 1 else f"{workers} workers"


def _memory_figure(memory: list[dict[str, Any]] | None) -> Figure | None:
    if not memory:
        return None
    figure, (total_axes, per_code_axes) = _new_figure(columns=2)
    issued = [row["issued_codes"] for row in memory]
    total_axes.plot(issued, [row["used_memory_delta_bytes"] / 1e6 for row in memory], marker="o")
    total_axes.set(title="Redis memory of the scan state", ylabel="MB used", yscale="log")
    # label the ticks between powers of ten too, as plain numbers (20, not a power notation)
    total_axes.yaxis.set_major_formatter(PLAIN)
    total_axes.yaxis.set_minor_formatter(PLAIN)
    per_code_axes.plot(
        issued, [row["bytes_per_scanned_code"] for row in memory], marker="o", label="all"
    )
    per_code_axes.plot(
        issued,
        [row["record_bytes_per_scanned_code"] for row in memory],
        marker="o",
        label="scan records",
    )
    per_code_axes.set(title="Bytes per scanned code", ylabel="bytes", ylim=(0, None))
    per_code_axes.legend(loc="lower right")
    for axes in (total_axes, per_code_axes):
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(THOUSANDS)
        axes.set_xlabel("issued codes")
        axes.grid(alpha=0.3)
    return figure


# Markdown


def _markdown(result: dict[str, Any], charts: dict[str, Path]) -> str:
    scan_path = result.get("scan_path") or {}
    sections: list[tuple[str, list[str] | None]] = [
        ("Goals", _goals_table(result.get("goals"))),
        ("Scan path by worker count", _workers_section(scan_path, charts)),
        ("Open-loop latency", _open_loop_section(scan_path.get("open_loop"), charts)),
        ("CPU per scan by stage", _stages_table(scan_path.get("stages_us_per_scan"))),
        ("Bulk ingest", _key_value_table(result.get("bulk_ingest"))),
        ("Codes", _key_value_table(result.get("codes"))),
        ("Sink", _key_value_table(result.get("sink"))),
        ("Memory by issued codes", _memory_section(result.get("memory"), charts)),
    ]
    if "topologies" in result:  # only a run with --cluster-masters measures it
        masters = result["topologies"]["masters"]
        title = f"Redis: one node and a cluster of {masters} masters"
        sections.append((title, _topologies_section(result["topologies"])))
    lines = _title(result)
    for title, body in sections:
        lines += [f"## {title}", "", *(body or [NOT_MEASURED, ""])]
    return "\n".join(lines)


def _title(result: dict[str, Any]) -> list[str]:
    started = datetime.fromisoformat(result["started_at"]).strftime("%Y-%m-%d %H:%M %Z")
    machine = dict(result["machine"])
    cpus = machine.pop("cpus", None)
    parts = [] if cpus is None else [f"{cpus} CPUs"]
    parts += [f"{MACHINE_LABELS.get(name, name)} {version}" for name, version in machine.items()]
    options = ", ".join(
        f"{name} {_cell(value)}" for name, value in (result.get("options") or {}).items()
    )
    return [
        f"# Benchmark suite: commit {result['git_commit']}, {started}",
        "",
        f"Machine: {', '.join(parts)}.",
        f"Run: {human_number(result.get('seconds'))} s; options: {options}.",
        "",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, first column left-aligned and the figures right-aligned."""
    alignment = ["---", *["---:"] * (len(header) - 1)]
    return [_table_row(cells) for cells in [header, alignment, *rows]] + [""]


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _chart_link(charts: dict[str, Path], name: str, description: str) -> list[str]:
    return [f"![{description}]({charts[name].name})", ""] if name in charts else []


def _goals_table(goals: list[dict[str, Any]] | None) -> list[str] | None:
    if not goals:
        return None
    header = ["Goal", "Target", "Measured", "Met", "Shortfall"]
    return _table(header, [_goal_row(goal) for goal in goals])


def _goal_row(goal: dict[str, Any]) -> list[str]:
    unit = goal.get("unit") or ""
    target = f"{'≥' if goal['better'] == 'higher' else '≤'} {_with_unit(goal['target'], unit)}"
    if goal["value"] is None:
        return [goal["description"], target, "not measured", "—", ""]
    met = "✓" if goal["met"] else "✗"
    shortfall = "" if goal["met"] else _shortfall(goal["value"], goal["target"], goal["better"])
    return [goal["description"], target, _with_unit(goal["value"], unit), met, shortfall]


def _with_unit(value: float, unit: str) -> str:
    return f"{human_number(value)} {unit}".rstrip()


def _shortfall(value: float, target: float, better: str) -> str:
    """How far a missed goal is: "26% short" of a minimum, "2% over" or "3.1 times over" a
    maximum."""
    if better == "higher":
        return f"{1 - value / target:.0%} short"
    if value < 2 * target:
        return f"{value / target - 1:.0%} over"
    return f"{value / target:.2g}{TIMES} over"


def _workers_section(scan_path: dict[str, Any], charts: dict[str, Path]) -> list[str] | None:
    by_workers = scan_path.get("by_workers")
    if not by_workers:
        return None
    processes = list(
        dict.fromkeys(name for run in by_workers for name in run["cpu_us_per_scan"] or {})
    )
    header = [
        "Workers",
        "Ceiling req/s",
        "Scan req/s",
        "Scan / ceiling",
        *(f"{label} ms at peak" for _, label in PERCENTILES),
        *(f"{process} CPU µs/scan" for process in processes),
        "hello-world CPU µs/request",
    ]
    rows = [_workers_row(run, processes) for run in by_workers]
    headline = scan_path.get("ceiling_ratio")
    return [
        f"Headline (1 worker): the scan path serves {_percent(headline)} of the hello-world "
        "ceiling.",
        "",
        *_table(header, rows),
        *_chart_link(charts, "workers", "Throughput vs workers"),
    ]


def _workers_row(run: dict[str, Any], processes: list[str]) -> list[str]:
    peak = run.get("peak") or {}
    cpu = run["cpu_us_per_scan"]
    return [
        str(run["workers"]),
        human_number(run["ceiling_per_s"]),
        human_number(run["peak_per_s"]),
        human_number(run["ceiling_ratio"]),
        *(human_number(peak.get(key)) for key, _ in PERCENTILES),
        *(human_number(cpu.get(process)) for process in processes),
        human_number((run.get("ceiling") or {}).get("cpu_us_per_request")),
    ]


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.0%}"


def _open_loop_section(
    open_loop: list[dict[str, Any]] | None, charts: dict[str, Path]
) -> list[str] | None:
    if not open_loop:
        return None
    header = ["Share of peak", "Offered req/s", "Achieved req/s", "p50 ms", "p90 ms", "p99 ms"]
    header += ["p99.9 ms", "max ms", "errors", "non-2xx", "max queued"]
    keys = ["offered_per_s", "achieved_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms"]
    keys += ["max_ms", "errors", "non_2xx", "queued_max"]
    rows = [
        [_percent(run["fraction"]), *(human_number(run.get(key)) for key in keys)]
        for run in open_loop
    ]
    return [*_table(header, rows), *_chart_link(charts, "latency", "Latency vs offered load")]


def _stages_table(stages: dict[str, float] | None) -> list[str] | None:
    if not stages:
        return None
    total = sum(stages.values())
    rows = [
        [stage, human_number(micros), _percent(micros / total if total else None)]
        for stage, micros in stages.items()
    ]
    rows.append(["**total**", f"**{human_number(total)}**", ""])
    return _table(["Stage", "µs per scan", "Share of total"], rows)


def _key_value_table(section: dict[str, Any] | None) -> list[str] | None:
    """One row per figure of a flat section; a nested mapping (CPU by process) fits one cell."""
    if not section:
        return None
    rows = [[_label(key), _cell(value)] for key, value in section.items()]
    return _table(["Figure", "Value"], rows)


def _label(key: str) -> str:
    words = " ".join(LABEL_WORDS.get(word, word) for word in key.split("_"))
    words = re.sub(r" per s\b", "/s", words)
    return words[:1].upper() + words[1:]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{name} {_cell(part)}" for name, part in value.items())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return human_number(value)
    return str(value)


def _topologies_section(section: dict[str, Any]) -> list[str]:
    """The pairs' runs, one row each and a row of medians, then each topology's medians."""
    pairs, median = section["pairs"], section["median"]
    masters = section["nodes"]["cluster"]
    header = ["Pair", "Order", "One node Redis µs/scan"]
    header += [f"Master {number} µs/scan" for number in range(1, len(masters) + 1)]
    header += ["Masters' sum µs/scan", "Sum / one node", "One node scans/s", "Cluster scans/s"]
    rows = [
        _topology_row(str(number), ", ".join(pair["order"]), pair, masters)
        for number, pair in enumerate(pairs, start=1)
    ]
    medians = {**median, "redis_cpu_ratio": section["redis_cpu_ratio"]}
    rows.append(_topology_row("**median**", "", medians, masters))
    names = ", ".join(
        f"{number} = {node['address']} (slots {node['slots']})"
        for number, node in enumerate(masters, start=1)
    )
    by_topology = [
        _topology_median_row(median[name], section["nodes"][name]) for name in ("single", "cluster")
    ]
    return [
        f"The scan path at peak ({_workers_label(section['workers'])}, "
        f"{section['connections']} connections, {section['duration_s']} s a run) on each "
        "topology in turn, in pairs whose order alternates. Redis CPU per scan is each "
        "redis-server's CPU time over the run per answered scan.",
        "",
        f"Headline: the masters' Redis CPU per scan adds up to "
        f"{human_number(section['redis_cpu_ratio'])}{TIMES} the one node's (median of "
        f"{len(pairs)} pairs); the cluster served {human_number(section['throughput_ratio'])}"
        f"{TIMES} the one node's scans/s.",
        "",
        *_table(header, rows),
        f"Masters: {names}.",
        "",
        *_table(list(TOPOLOGY_MEDIANS_HEADER), by_topology),
    ]


def _topology_row(
    label: str, order: str, figures: dict[str, Any], masters: list[dict[str, Any]]
) -> list[str]:
    """A pair's runs, or (given the medians) the row of medians."""
    single, cluster = figures["single"], figures["cluster"]
    per_master = [cluster["redis_us_per_scan"][node["address"]] for node in masters]
    return [
        label,
        order,
        human_number(single["redis_us_per_scan_sum"]),
        *map(human_number, per_master),
        human_number(cluster["redis_us_per_scan_sum"]),
        human_number(figures["redis_cpu_ratio"]),
        human_number(single["per_s"]),
        human_number(cluster["per_s"]),
    ]


def _topology_median_row(median: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    keys = ("per_s", "redis_us_per_scan_sum", "api_us_per_scan", "sink_us_per_scan")
    label = "one node" if len(nodes) == 1 else f"cluster of {len(nodes)}"
    rewrites = sum(node["aof_rewrites"] for node in nodes)
    return [label, *(human_number(median[key]) for key in keys), str(rewrites)]


def _memory_section(
    memory: list[dict[str, Any]] | None, charts: dict[str, Path]
) -> list[str] | None:
    if not memory:
        return None
    header = ["Issued codes", "Scanned codes", "Redis used", "Growth", "B per scanned code"]
    header += ["Record B per scanned code", "Bitmap bits per issued code"]
    header += ["Stream B per unsunk event"]
    rows = [
        _memory_row(row, previous)
        for row, previous in zip(memory, [None, *memory[:-1]], strict=True)
    ]
    return [*_table(header, rows), *_chart_link(charts, "memory", "Memory vs issued codes")]


def _memory_row(row: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    keys = ["bytes_per_scanned_code", "record_bytes_per_scanned_code"]
    keys += ["bitmap_bits_per_issued_code", "stream_bytes_per_unsunk_event"]
    scanned = f"{human_number(row['scanned_codes'])} ({_percent(row['scanned_fraction'])})"
    return [
        human_number(row["issued_codes"]),
        scanned,
        _bytes(row["used_memory_delta_bytes"]),
        _growth(row, previous),
        *(human_number(row.get(key)) for key in keys),
    ]


def _growth(row: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """Memory growth against the previous row, beside the growth in issued codes."""
    if previous is None or not previous["used_memory_delta_bytes"]:
        return "—"
    memory = row["used_memory_delta_bytes"] / previous["used_memory_delta_bytes"]
    codes = row["issued_codes"] / previous["issued_codes"]
    return f"{memory:.2g}{TIMES} for {codes:.2g}{TIMES} codes"


def _bytes(count: float) -> str:
    for unit in ("B", "kB", "MB"):
        if abs(count) < 1000:
            return f"{human_number(count)} {unit}"
        count /= 1000
    return f"{human_number(count)} GB"

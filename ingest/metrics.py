"""Prometheus metrics of the scan path (``GET /metrics``).

With several workers (``scanward serve --workers N``) every process writes its samples under
``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any worker aggregates all of them, which is
prometheus-client's multiprocess mode; the supervisor sets the variable before workers start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

SCANS = Counter("scanward_scans", "Answered scans (retries not counted again)", ["verdict"])
SCANS_REFUSED = Counter(
    "scanward_scans_refused", "Scans answered 503 because the unsunk event backlog was full"
)
SCANS_BLOCKED = Counter(
    "scanward_scans_blocked", "Scans answered 429: the device or IP is blocked for guessing"
)
DRAWS = Counter("scanward_draws", "Prize draws made (retries not counted again)")
PRIZES = Counter("scanward_prizes", "Prizes won (retries not counted again)", ["kind"])
MICRO_BATCH_SIZE = Histogram(
    "scanward_scan_batch_size",
    "Scans decided per Redis round trip",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
SCAN_STAGE_SECONDS = Counter(
    "scanward_scan_stage_seconds",
    "Time in the scan path's synchronous stages (ingest.stage_timer), published per micro-batch",
    ["stage"],
)
REDIS_ROUND_TRIP = Histogram(
    "scanward_redis_round_trip_seconds",
    "Time of one micro-batch's Redis round trip",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)


LabelledValues = Sequence[tuple[Mapping[str, str], float]]
"""Samples of one gauge, each with its labels (the same label names for all)."""


def exposition(live: Mapping[str, tuple[str, float | LabelledValues]]) -> bytes:
    """The process (or all workers') metrics plus gauges read at scrape time, ``name: (help,
    value)``, the value a number or labelled samples."""
    if MULTIPROC_ENV in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    gauges = CollectorRegistry()
    gauges.register(_Gauges(live))
    return text + generate_latest(gauges)


class _Gauges:
    def __init__(self, values: Mapping[str, tuple[str, float | LabelledValues]]) -> None:
        self._values = values

    def collect(self) -> list[GaugeMetricFamily]:
        families = []
        for name, (help_text, value) in self._values.items():
            if isinstance(value, int | float):
                families.append(GaugeMetricFamily(name, help_text, value=value))
                continue
            gauge = GaugeMetricFamily(name, help_text, labels=list(value[0][0]) if value else [])
            for labels, sample in value:
                gauge.add_metric(list(labels.values()), sample)
            families.append(gauge)
        return families

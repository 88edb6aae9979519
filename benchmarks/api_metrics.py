"""Samples of the API's ``GET /metrics``, for figures read around a benchmark's phase."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import campaign_bench


def scrape(url: str) -> dict[str, float]:
    """Every sample, keyed ``name`` or ``name{label="value",...}`` as in the exposition; the
    benchmarks' APIs take their admin token."""
    admin = {"Authorization": f"Bearer {campaign_bench.ADMIN_TOKEN}"}
    request = urllib.request.Request(f"{url}/metrics", headers=admin)
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{name}="{value}"' for name, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def stage_seconds(samples: dict[str, float]) -> dict[str, float]:
    """CPU seconds of the scan path by stage (``scanward_scan_stage_seconds_total``)."""
    prefix = 'scanward_scan_stage_seconds_total{stage="'
    return {
        name.removeprefix(prefix).removesuffix('"}'): value
        for name, value in samples.items()
        if name.startswith(prefix)
    }


def mean_batch(before: dict[str, float], after: dict[str, float]) -> float:
    """Scans per micro-batch between two scrapes (of the worker that answered them, which is
    all of them in multiprocess mode)."""
    scans, batches = (
        after.get(name, 0.0) - before.get(name, 0.0)
        for name in ("scanward_scan_batch_size_sum", "scanward_scan_batch_size_count")
    )
    return round(scans / max(1.0, batches), 1)

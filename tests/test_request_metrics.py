"""Request metrics in ``/metrics``: a latency histogram by route template and a count of
responses by route and status, against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import ADMIN, Sample, metric_samples, order_batch

pytestmark = pytest.mark.redis

Client = TestClient[Any, Any]
LATENCY = "scanward_http_request_duration_seconds"
RESPONSES = "scanward_http_responses_total"


def _responses(method: str, route: str, status: int) -> Sample:
    labels = {"method": method, "route": route, "status": str(status)}
    return RESPONSES, tuple(sorted(labels.items()))


def _requests_timed(method: str, route: str) -> Sample:
    return f"{LATENCY}_count", tuple(sorted({"method": method, "route": route}.items()))


def _added(before: dict[Sample, float], after: dict[Sample, float], sample: Sample) -> float:
    return after.get(sample, 0.0) - before.get(sample, 0.0)


async def test_responses_are_counted_by_route_template_and_status(client: Client) -> None:
    batch = await order_batch(client)
    before = await metric_samples(client)

    assert (await client.post("/v1/scans", json={"code": "not-a-code"})).status == 200
    assert (await client.post("/v1/scans", data=b"{not json")).status == 400
    assert (await client.get(f"/v1/batches/{batch['batch_id']}", headers=ADMIN)).status == 200
    assert (await client.get(f"/v1/batches/{batch['batch_id']}")).status == 401
    after = await metric_samples(client)

    assert _added(before, after, _responses("POST", "/v1/scans", 200)) == 1
    assert _added(before, after, _responses("POST", "/v1/scans", 400)) == 1
    assert _added(before, after, _responses("GET", "/v1/batches/{batch_id}", 200)) == 1
    assert _added(before, after, _responses("GET", "/v1/batches/{batch_id}", 401)) == 1
    assert _added(before, after, _requests_timed("POST", "/v1/scans")) == 2
    assert _added(before, after, _requests_timed("GET", "/v1/batches/{batch_id}")) == 2
    assert not any(batch["batch_id"] in str(labels) for _, labels in after)


async def test_unmatched_paths_share_one_label_value(client: Client) -> None:
    before = await metric_samples(client)

    for path in ("/nothing/here", "/v1/secret-probe-1", "/v1/secret-probe-2"):
        assert (await client.get(path)).status == 404
    assert (await client.delete("/v1/scans")).status == 405
    after = await metric_samples(client)

    assert _added(before, after, _responses("*", "unmatched", 404)) == 3
    assert _added(before, after, _responses("*", "unmatched", 405)) == 1
    assert not any("probe" in str(labels) or "nothing" in str(labels) for _, labels in after)


async def test_the_latency_histogram_has_buckets_for_each_route(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    after = await metric_samples(client)

    route = (("method", "GET"), ("route", "/healthz"))
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in after.items()
        if name == f"{LATENCY}_bucket" and tuple(kv for kv in labels if kv[0] != "le") == route
    }
    assert buckets["+Inf"] == after[(f"{LATENCY}_count", route)] >= 1
    assert len(buckets) > 5

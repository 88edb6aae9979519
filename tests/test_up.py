"""`scanward up` end to end: its own Redis and ClickHouse, two API workers and the sink; a scan
answered over HTTP arrives in ClickHouse with its fields; Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.ops.local_services import ServiceAddresses, free_port
from ingest.warehouse.client import connect
from tests.conftest import KEYRING_SECRET
from tests.helpers import ADMIN, DISTRIBUTOR, DISTRIBUTOR_BODY, DISTRIBUTOR_URL, ORDER, shipment_of

pytestmark = pytest.mark.slow


def _call(
    url: str, body: object = None, headers: dict[str, str] | None = None, method: str | None = None
) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as reply:
        raw = reply.read()
    return orjson.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()


def _wait_for(condition: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_a_scan_travels_from_http_to_clickhouse(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
        "SCANWARD_ADMIN_TOKEN": ADMIN["Authorization"].removeprefix("Bearer "),
        "SCANWARD_SINK_FLUSH_MS": "200",
    }
    for name in ("SCANWARD_REDIS_URL", "SCANWARD_CLICKHOUSE_URL", "SCANWARD_CONFIG"):
        env.pop(name, None)
    command = [sys.executable, "-m", "ingest.cli", "up", "--data-dir", str(tmp_path)]
    up = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _call(api + "/healthz")["status"] == "ok", "the API")
        batch = _call(api + "/v1/batches", ORDER, ADMIN)
        _call(api + DISTRIBUTOR_URL, DISTRIBUTOR_BODY, ADMIN, "PUT")
        _call(api + "/v1/shipments", shipment_of(batch), ADMIN)
        code = _call(f"{api}/v1/batches/{batch['batch_id']}/codes?limit=1", headers=ADMIN).strip()
        scan = {
            "code": code,
            "lat": 31.2304,
            "lon": 121.4737,
            "accuracy_m": 12.5,
            "device_id": "phone-7",
            "member_id": "member-9",
            "scan_id": "e2e-1",
            "client_ts": "2027-06-01T12:00:00+08:00",
        }
        answer = _call(api + "/v1/scans", scan)
        assert answer["first_scan"] is True
        services = ServiceAddresses.load(tmp_path)
        assert services is not None
        clickhouse = connect(services.clickhouse_url)
        query = (
            "SELECT scan_id, code, serial, batch_id, sku, gtin, verdict, genuine, first_scan,"
            " scan_count, lat, lon, accuracy_m, member_id, device_id, ip, flags, client_time_ms,"
            " risk, distributor_id, surfaced_in, distance_km"
            " FROM scans"
        )
        rows = _wait_for(lambda: clickhouse.execute(query), "the row in ClickHouse")
        clickhouse.disconnect()
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output.decode()
    assert rows == [
        (
            "e2e-1",
            code,
            batch["first_serial"],
            batch["batch_id"],
            ORDER["sku"],
            batch["gtin"],
            "genuine",
            1,
            1,
            1,
            31.2304,
            121.4737,
            12.5,
            "member-9",
            "phone-7",
            "127.0.0.1",
            [],
            1_811_822_400_000,  # 2027-06-01T04:00:00Z
            0,
            DISTRIBUTOR,
            DISTRIBUTOR,
            0.0,
        )
    ]
    assert not (tmp_path / "services.json").exists()

"""The operations kit in ``deploy/``: Prometheus alert rules and their unit tests (promtool), the
Grafana dashboard, the systemd units (systemd-analyze), and the gauges the alerts need, each
metric they use checked against a real ``/metrics`` scrape."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_driver
import pytest
import yaml
from aiohttp.test_utils import TestClient

from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops.local_services import free_port
from tests.conftest import api_settings
from tests.helpers import (
    ADMIN,
    AiohttpClient,
    batch_codes,
    metric_samples,
    order_shipped_batch,
)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
TESTS = ("alerts_test.yml", "alerts_daily_test.yml")  # promtool unit tests of the rules
DASHBOARD = DEPLOY / "grafana" / "scanward.json"
SYSTEMD = DEPLOY / "systemd"
INSTALLED_SCANWARD = "/opt/scanward/bin/scanward"
PROMETHEUS_OWN = {"up"}  # made by Prometheus for each scrape, not served by scanward
METRIC_NAME = re.compile(r"\b(scanward_[a-z0-9_]+|up)\b(?!\s*\()")

Client = TestClient[Any, Any]


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_alert_rules_and_scrape_config_pass_promtool(tmp_path: Path) -> None:
    rules = _run("promtool", "check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path)
    (tmp_path / "scanward-metrics.token").write_text("sw_a-metrics-token\n")  # it must exist
    config = _run("promtool", "check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr


def test_prometheus_scrapes_with_a_metrics_token() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [scanward] = config["scrape_configs"]
    assert scanward["authorization"] == {"credentials_file": "scanward-metrics.token"}


def test_alert_rules_pass_their_unit_tests() -> None:
    tested = _run("promtool", "test", "rules", *TESTS, cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = [yaml.safe_load((PROMETHEUS / name).read_text())["tests"] for name in TESTS]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in itertools.chain(*tests):
        for check in test["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in _alert_rules()}
    assert alerts == fired
    assert alerts == quiet


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query as a recording rule (Grafana's interval variable
    replaced by a fixed range)."""
    queries = _dashboard_queries()
    assert queries
    rules = [
        {"record": f"dashboard:query_{number}", "expr": query.replace("$__rate_interval", "5m")}
        for number, query in enumerate(queries)
    ]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    checked = _run("promtool", "check", "rules", "queries.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify on a copy whose ExecStart is this checkout's scanward (verify
    checks that it exists); the hardening drop-in is loaded from beside the units."""
    units = tmp_path / "systemd"
    shutil.copytree(SYSTEMD, units)
    scanward = str(Path(sys.executable).parent / "scanward")
    names = []
    for unit in [*sorted(units.glob("scanward*.service")), units / "scanward.target"]:
        text = unit.read_text()
        assert text.count(INSTALLED_SCANWARD) == ("ExecStart=" in text)
        unit.write_text(text.replace(INSTALLED_SCANWARD, scanward))
        names.append(f"./{unit.name}")
    verified = _run("systemd-analyze", "verify", "--man=no", *names, cwd=units)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""  # unknown keys and bad values are only warned about


def test_systemd_units_run_as_their_own_user_with_hardening() -> None:
    hardening = (SYSTEMD / "scanward-.service.d" / "hardening.conf").read_text()
    for line in (
        "User=scanward",
        "EnvironmentFile=/etc/scanward/scanward.env",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/scanward",
        "StateDirectoryMode=0700",
    ):
        assert line in hardening.splitlines()
    for service in ("api", "sink", "alerts"):
        assert "Restart=on-failure" in (SYSTEMD / f"scanward-{service}.service").read_text()


def _names_used() -> set[str]:
    texts = [rule["expr"] for rule in _alert_rules()] + _dashboard_queries()
    return {name for text in texts for name in METRIC_NAME.findall(text)}


async def _one_prize_and_a_sunk_scan(client: Client) -> None:
    now = datetime.now(UTC)
    campaign = {
        "name": "Kit",
        "start": (now - timedelta(days=1)).isoformat(),
        "end": (now + timedelta(days=10)).isoformat(),
        "timezone": "UTC",
        "skus": ["BEER-500"],
        "prizes": [
            {"id": "red5", "kind": "cash", "value": 500, "total_budget": 40, "base_probability": 1}
        ],
    }
    reply = await client.put("/v1/campaigns/kit", json=campaign, headers=ADMIN)
    assert reply.status == 201, await reply.text()
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], 1)
    answer = await (await client.post("/v1/scans", json={"code": code, "member_id": "m"})).json()
    assert answer["prize"]["prize_id"] == "red5"


@pytest.mark.redis
@pytest.mark.clickhouse
async def test_every_metric_the_rules_and_dashboard_use_is_served(app_client: Client) -> None:
    await _one_prize_and_a_sunk_scan(app_client)
    deadline = time.monotonic() + 20
    served = {name for name, _ in await metric_samples(app_client)}
    while "scanward_sink_lag_ms" not in served and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # until the sink has inserted once
        served = {name for name, _ in await metric_samples(app_client)}

    used = _names_used()
    assert "scanward_http_request_duration_seconds_bucket" in used
    assert used - served == PROMETHEUS_OWN


@pytest.mark.redis
@pytest.mark.clickhouse
async def test_the_gauges_the_alerts_need(app_client: Client, sunk_settings: Settings) -> None:
    await _one_prize_and_a_sunk_scan(app_client)
    assert sunk_settings.clickhouse_url is not None
    warehouse = clickhouse_driver.Client.from_url(sunk_settings.clickhouse_url)
    warehouse.execute(
        "INSERT INTO fraud_alerts (alert_id, kind, code, status) VALUES",
        [
            ("a1", "cloned_code", "C1", "open"),
            ("a2", "cloned_code", "C2", "open"),
            ("a3", "device_farm", "", "closed"),
        ],
    )
    warehouse.disconnect()

    served = await metric_samples(app_client)

    assert served["scanward_redis_up", ()] == 1
    assert served["scanward_clickhouse_up", ()] == 1
    limit = sunk_settings.max_unsunk_events // sunk_settings.partitions.scans
    assert served["scanward_partition_unsunk_events_limit", ()] == limit
    assert served["scanward_fraud_alerts_open", (("kind", "cloned_code"),)] == 2
    assert served["scanward_fraud_alerts_open", (("kind", "device_farm"),)] == 0
    prize = (("campaign", "kit"), ("prize", "red5"))
    assert served["scanward_prize_budget", prize] == 40
    assert served["scanward_prize_remaining_budget", prize] == 39


async def test_unreachable_redis_and_clickhouse_show_as_0(
    aiohttp_client: AiohttpClient, keyring_path: Path, tmp_path: Path
) -> None:
    settings = api_settings(f"redis://127.0.0.1:{free_port()}/0", keyring_path, tmp_path)
    settings = settings.with_overrides(
        clickhouse_url=f"clickhouse://127.0.0.1:{free_port()}/default"
    )
    client = await aiohttp_client(create_app(settings))

    served = await metric_samples(client)

    assert served["scanward_redis_up", ()] == 0
    assert served["scanward_clickhouse_up", ()] == 0
    assert not any(name.startswith("scanward_fraud_alerts") for name, _ in served)

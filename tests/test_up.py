"""`scanward up` end to end: its own Redis and ClickHouse, two API workers and the sink; a scan
answered over HTTP arrives in ClickHouse with its fields; Ctrl-C stops everything. With
``--clickhouse-shards 2 --clickhouse-replicas 2``, a ClickHouse cluster and ZooKeeper instead,
migrated on every server, kept across runs and stopped by PID; the options it refuses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.cli import main
from ingest.ops.clickhouse_cluster import DATABASE
from ingest.ops.local_services import (
    CLICKHOUSE_PASSWORD_FILE,
    REDIS_PASSWORD_FILE,
    ServiceAddresses,
    free_port,
    masked_url,
)
from ingest.warehouse.client import connect
from ingest.warehouse.schema import load_migrations
from ingest.warehouse.topology import Topology
from tests.conftest import KEYRING_SECRET, SERVER_SETTINGS
from tests.helpers import ADMIN, DISTRIBUTOR, DISTRIBUTOR_BODY, DISTRIBUTOR_URL, ORDER, shipment_of

MIGRATIONS = [migration.name for migration in load_migrations()]
TABLES = "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
CLUSTER_START_TIMEOUT_S = 240.0
"""ZooKeeper, 4 ClickHouse servers, Redis and the migrations statement by statement, on a box of
2 cores shared with other work (about 15 s when it is idle)."""
STOP_TIMEOUT_S = 120.0
"""Unset for `scanward up` to start servers of its own."""


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


def _up_command(data_dir: Path, port: int, *options: str) -> list[str]:
    up = [sys.executable, "-m", "ingest.cli", "up"]
    return [*up, "--data-dir", str(data_dir), "--port", str(port), *options]


def _up_env() -> dict[str, str]:
    """The environment of a `scanward up` that starts its own servers, with the tests' admin
    token and a short sink flush."""
    env = {
        **os.environ,
        "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
        "SCANWARD_ADMIN_TOKEN": ADMIN["Authorization"].removeprefix("Bearer "),
        "SCANWARD_SINK_FLUSH_MS": "200",
    }
    return {name: value for name, value in env.items() if name not in SERVER_SETTINGS}


@pytest.mark.slow
def test_a_scan_travels_from_http_to_clickhouse(tmp_path: Path) -> None:
    port = free_port()
    up = subprocess.Popen(
        _up_command(tmp_path, port, "--workers", "2"),
        env=_up_env(),
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
    printed = output.decode()
    for secret_file in (REDIS_PASSWORD_FILE, CLICKHOUSE_PASSWORD_FILE):
        assert (tmp_path / secret_file).read_text().strip() not in printed
    assert masked_url(services.redis_url) in printed
    assert masked_url(services.clickhouse_url) in printed
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


@pytest.mark.parametrize(
    ("configured", "options", "error"),
    [
        ({"SCANWARD_REDIS_URL": "redis://127.0.0.1:1/0"}, ["--redis-masters", "3"], "REDIS_URL"),
        ({}, ["--redis-replicas", "1"], "--redis-replicas needs --redis-masters"),
        (
            {"SCANWARD_CLICKHOUSE_URL": "clickhouse://127.0.0.1:1/default"},
            ["--clickhouse-shards", "2"],
            "a ClickHouse is configured (SCANWARD_CLICKHOUSE_URL): use one or the other",
        ),
        ({}, ["--clickhouse-replicas", "2"], "--clickhouse-replicas needs --clickhouse-shards"),
        ({}, ["--clickhouse-shards", "1"], "a ClickHouse cluster of one server is one"),
    ],
)
def test_up_refuses_cluster_options_it_cannot_use(
    up_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    configured: dict[str, str],
    options: list[str],
    error: str,
) -> None:
    for name, value in configured.items():
        monkeypatch.setenv(name, value)
    assert main(["up", "--data-dir", str(up_env), *options]) == 1
    message = capsys.readouterr().err
    assert error in message
    assert message.count("\n") == 1


@pytest.mark.parametrize("option", ["--clickhouse-shards", "--clickhouse-replicas"])
def test_up_refuses_a_cluster_without_shards_or_replicas(
    up_env: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--data-dir", str(up_env), "--clickhouse-shards", "2", option, "0"])
    assert exit_.value.code == 2
    assert f"argument {option}: must be at least 1" in capsys.readouterr().err


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """Every process by PID: its parent, start time (clock ticks after boot), state and name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent, *rest = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(parent), int(rest[17]), state, name)
    return found


def _descendants(root: int) -> dict[tuple[int, int], str]:
    """The processes under ``root`` now, by PID and start time (no later process has both),
    with their names."""
    processes = _processes()
    found: dict[tuple[int, int], str] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid, (ppid, started, _, name) in processes.items():
            if ppid == parent:
                found[(pid, started)] = name
                parents.append(pid)
    return found


def _running(processes: dict[tuple[int, int], str]) -> dict[int, str]:
    """Those of ``processes`` that have not exited."""
    now = _processes()
    return {
        pid: name
        for (pid, started), name in processes.items()
        if pid in now and now[pid][1] == started and now[pid][2] != "Z"
    }


@dataclass
class _Up:
    api: str
    output: Path
    started: dict[tuple[int, int], str]
    """The processes under `scanward up` once it served."""

    def printed(self) -> str:
        return self.output.read_text()


@contextlib.contextmanager
def _cluster_up(data_dir: Path, stop: signal.Signals) -> Iterator[_Up]:
    """`scanward up` with a ClickHouse cluster of 2 shards of 2 replicas (and its own Redis) in
    ``data_dir``, until it serves; then stopped by ``stop`` to its PID, after which it must have
    exited 0 with every process under it."""
    port = free_port()
    command = _up_command(data_dir, port, "--clickhouse-shards", "2", "--clickhouse-replicas", "2")
    output = data_dir / f"up-{time.monotonic_ns()}.out"
    with output.open("wb") as written:
        up = subprocess.Popen(command, env=_up_env(), stdout=written, stderr=subprocess.STDOUT)
    running = _Up(f"http://127.0.0.1:{port}", output, {})
    try:
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
        while _health(running.api) is None:
            if up.poll() is not None:
                pytest.fail(f"scanward up exited with {up.returncode}:\n{running.printed()}")
            if time.monotonic() > deadline:
                pytest.fail(f"scanward up did not serve in time:\n{running.printed()}")
            time.sleep(0.5)
        running.started = _descendants(up.pid)
        yield running
    finally:
        up.send_signal(stop)
        try:
            up.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            up.kill()
            for pid in _running(running.started):
                os.kill(pid, signal.SIGKILL)
            raise
    assert up.returncode == 0, running.printed()
    assert _running(running.started) == {}
    assert not (data_dir / "services.json").exists()


def _health(api: str) -> dict[str, Any] | None:
    try:
        health: dict[str, Any] = _call(api + "/healthz")
    except OSError:
        return None
    return health


def _query(url: str, sql: str, rows: list[tuple[Any, ...]] | None = None) -> Any:
    """``sql`` on the server (or cluster) of ``url``: its rows, or an INSERT's count of
    ``rows``, which go as data (with its VALUES in the text, it would wait for more)."""
    client = connect(url)
    try:
        return client.execute(sql, rows)
    finally:
        client.disconnect()


@pytest.mark.slow
@pytest.mark.clickhouse_cluster
def test_up_runs_on_a_clickhouse_cluster_of_2_shards_of_2_replicas_kept_across_runs(
    tmp_path: Path,
) -> None:
    with _cluster_up(tmp_path, signal.SIGTERM) as first:
        names = sorted(first.started.values())
        assert names.count("clickhouse-serv") == 4  # the kernel keeps 15 characters of a name
        assert (names.count("java"), names.count("redis-server")) == (1, 1)  # ZooKeeper, Redis
        services = ServiceAddresses.load(tmp_path)
        assert services is not None
        cluster = Topology.parse(services.clickhouse_url)
        assert ([len(shard) for shard in cluster.shards], cluster.database) == ([2, 2], DATABASE)
        for _, _, url in cluster.servers():
            applied = _query(url, "SELECT name FROM schema_migrations ORDER BY version")
            assert applied == [(name,) for name in MIGRATIONS]
            engines = dict(_query(url, TABLES))
            assert (engines["scans_local"], engines["scans"]) == (
                "ReplicatedMergeTree",
                "Distributed",
            )
        assert _call(first.api + "/healthz")["clickhouse"] == "ok"
        batch = _call(first.api + "/v1/batches", ORDER, ADMIN)
        code = _call(f"{first.api}/v1/batches/{batch['batch_id']}/codes?limit=1", headers=ADMIN)
        answer = _call(first.api + "/v1/scans", {"code": code.strip(), "scan_id": "cluster-1"})
        assert answer["first_scan"] is True
        scans = "SELECT scan_id FROM scans"
        rows = _wait_for(lambda: _query(services.clickhouse_url, scans), "the scan in ClickHouse")
        assert rows == [("cluster-1",)]
    printed = first.printed()
    assert f"clickhouse  {masked_url(services.clickhouse_url)}\n" in printed
    migrated = [line for line in printed.splitlines() if line.startswith("migrations on shard")]
    assert [line.rsplit(": ", 1)[1] for line in migrated] == [", ".join(MIGRATIONS)] * 4

    with _cluster_up(tmp_path, signal.SIGINT) as second:  # the same data folder and shape
        again = ServiceAddresses.load(tmp_path)
        assert again is not None
        cluster = Topology.parse(again.clickhouse_url)
        for _, _, url in cluster.servers():
            assert _wait_for(lambda url=url: _query(url, scans), "scans") == [("cluster-1",)]
        # replication goes on, on the servers' new ports
        (s1r1, s1r2), _ = cluster.shards
        _query(s1r1, "INSERT INTO batches (batch_id, status, version) VALUES", [("b", "open", 1)])
        copied = "SELECT batch_id FROM batches WHERE batch_id = 'b'"
        assert _wait_for(lambda: _query(s1r2, copied), "the replica") == [("b",)]
    migrated = [
        line for line in second.printed().splitlines() if line.startswith("migrations on shard")
    ]
    assert [line.rsplit(": ", 1)[1] for line in migrated] == ["up to date"] * 4

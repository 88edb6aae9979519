"""Real Redis and ClickHouse servers for the session, started by the same harness as `scanward up`.

A test that talks to a server must say so with ``@pytest.mark.redis``, ``@pytest.mark.cluster``
(a Redis Cluster of three primaries), ``@pytest.mark.clickhouse`` or
``@pytest.mark.clickhouse_cluster`` (2 shards of 2 replicas and ZooKeeper); asking for a server
fixture without the marker fails the test.  Each server starts at the first test that asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from codes.keyring import Keyring
from ingest.config import Settings
from ingest.http.app import create_app
from ingest.ops import local_services
from ingest.ops.clickhouse_cluster import (
    DATABASE,
    ClickHouseClusterServers,
    start_clickhouse_cluster,
)
from ingest.warehouse.client import connect
from ingest.warehouse.topology import Topology
from tests.helpers import ADMIN_TOKEN, ONE_ADDRESS_POLICY, ONE_ADDRESS_POLICY_JSON, AiohttpClient
from tests.sink_support import fresh_database, sinking

KEYRING_SECRET = "test keyring secret"
SERVER_SETTINGS = ("SCANWARD_REDIS_URL", "SCANWARD_CLICKHOUSE_URL", "SCANWARD_CONFIG")
"""The settings that name servers: without them, `scanward up` starts its own."""


def _require_marker(request: pytest.FixtureRequest, marker: str) -> None:
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(f"{request.node.nodeid} uses {marker} without @pytest.mark.{marker}")


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = local_services.start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def _redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[local_services.RedisClusterServers]:
    cluster = local_services.start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _clickhouse_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClickHouseClusterServers]:
    cluster = start_clickhouse_cluster(tmp_path_factory.mktemp("clickhouse-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def clickhouse_cluster_servers(
    request: pytest.FixtureRequest, _clickhouse_cluster: ClickHouseClusterServers
) -> ClickHouseClusterServers:
    """The session's ClickHouse cluster's processes, for tests that stop and start servers."""
    _require_marker(request, "clickhouse_cluster")
    return _clickhouse_cluster


@pytest.fixture
def clickhouse_cluster(
    request: pytest.FixtureRequest, _clickhouse_cluster: ClickHouseClusterServers
) -> Iterator[Topology]:
    """The session's ClickHouse cluster with its database (``clickhouse_cluster.DATABASE``, the
    one its servers ask each other's tables in) made empty on every server, not migrated, and
    dropped afterwards: its topology."""
    _require_marker(request, "clickhouse_cluster")
    name = DATABASE
    servers = [server.url for server in _clickhouse_cluster.servers()]
    for url in servers:
        _on_server(url, f"DROP DATABASE IF EXISTS {name}")
        _on_server(url, f"CREATE DATABASE {name}")
    yield Topology.parse(
        ";".join(
            ",".join(f"{server.url.rsplit('/', 1)[0]}/{name}" for server in shard)
            for shard in _clickhouse_cluster.shards
        )
    )
    for url in servers:
        _on_server(url, f"DROP DATABASE IF EXISTS {name}")


def _on_server(url: str, statement: str) -> None:
    client = connect(url)
    try:
        client.execute(statement)
    finally:
        client.disconnect()


@pytest.fixture(scope="session")
def _clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = local_services.start_clickhouse(tmp_path_factory.mktemp("clickhouse"))
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, _redis_server: str) -> str:
    """The session's Redis, emptied before the test."""
    _require_marker(request, "redis")
    with redis.Redis.from_url(_redis_server) as client:
        client.flushall()
    return _redis_server


@pytest.fixture
def cluster_servers(
    request: pytest.FixtureRequest, _redis_cluster: local_services.RedisClusterServers
) -> Iterator[local_services.RedisClusterServers]:
    """The session's Redis Cluster (3 primaries, no replicas), for tests that need its nodes;
    not emptied.  A node the test killed or stopped is restarted after it, for the next test."""
    _require_marker(request, "cluster")
    yield _redis_cluster
    stopped = [node for node in _redis_cluster.nodes if node.process.poll() is not None]
    for node in stopped:
        _redis_cluster.restart(node.url)
    if stopped:
        _redis_cluster.wait_until_ok()


@pytest.fixture
def cluster_url(cluster_servers: local_services.RedisClusterServers) -> str:
    """The session's Redis Cluster, every primary emptied before the test: its nodes' URLs
    joined by commas."""
    for primary in cluster_servers.primaries():
        with redis.Redis.from_url(primary) as client:
            client.flushall()
    return cluster_servers.url


@pytest.fixture
def clickhouse_url(request: pytest.FixtureRequest, _clickhouse_server: str) -> str:
    _require_marker(request, "clickhouse")
    return _clickhouse_server


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "keyring.bin"
    Keyring.new().save(path, KEYRING_SECRET)
    return path


@pytest.fixture
def settings(redis_url: str, keyring_path: Path, tmp_path: Path) -> Settings:
    return api_settings(redis_url, keyring_path, tmp_path)


def api_settings(redis_url: str, keyring_path: Path, tmp_path: Path) -> Settings:
    """The API's settings in tests, on the Redis (or the cluster) of ``redis_url``."""
    return Settings(
        data_dir=tmp_path,
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        keyring_secret=KEYRING_SECRET,
        keyring_path=keyring_path,
        resolver_url="https://id.example.com",
        max_batch_quantity=2_000_000,
        fraud_policy=ONE_ADDRESS_POLICY,
    )


def serve_environment(
    redis_url: str, keyring_path: Path, data_dir: Path, port: int
) -> dict[str, str]:
    """The environment of a `scanward serve` a test starts: this process's, with ``redis_url``,
    the test keyring, the admin token, ``port``, and the per-address rules lifted (every test
    client is 127.0.0.1)."""
    return {
        **os.environ,
        "SCANWARD_DATA_DIR": str(data_dir),
        "SCANWARD_REDIS_URL": redis_url,
        "SCANWARD_KEYRING_SECRET": KEYRING_SECRET,
        "SCANWARD_KEYRING_PATH": str(keyring_path),
        "SCANWARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "SCANWARD_PORT": str(port),
        "SCANWARD_FRAUD_POLICY": ONE_ADDRESS_POLICY_JSON,
    }


@pytest.fixture
def database(clickhouse_url: str) -> Iterator[str]:
    """A fresh, migrated ClickHouse database of its own; its URL."""
    with fresh_database(clickhouse_url) as url:
        yield url


@pytest.fixture
def streams(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test's Redis, for reading and writing streams directly."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sunk_settings(settings: Settings, clickhouse_url: str) -> Iterator[Settings]:
    """The app's settings with a fresh, migrated ClickHouse database and a sink running on it."""
    with sinking(settings, clickhouse_url) as sunk:
        yield sunk


@pytest.fixture
async def app_client(aiohttp_client: AiohttpClient, sunk_settings: Settings) -> Any:
    """The app with ClickHouse and a running sink."""
    return await aiohttp_client(create_app(sunk_settings))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> TestClient[Any, Any]:
    """The app on a real loopback server, with the session's Redis."""
    result: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    return result


@pytest.fixture
def up_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An environment where `scanward up` would start its own servers in ``tmp_path``; a
    refused start leaves nothing there."""
    for name in SERVER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCANWARD_KEYRING_SECRET", KEYRING_SECRET)
    yield tmp_path
    assert list(tmp_path.iterdir()) == []

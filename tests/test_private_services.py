"""The servers `scanward up` and the tests start are private to their user: Redis and ClickHouse
want a password generated into the data folder (0600, kept across starts), and the data folder,
the servers' folders and their files are 0700 and 0600; a URL is printed with its password
masked."""

from __future__ import annotations

import re
import shutil
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from clickhouse_driver import Client
from clickhouse_driver.errors import NetworkError, ServerException, SocketTimeoutError

from ingest.http.app import create_app
from ingest.ops import local_services
from ingest.ops.clickhouse_cluster import ClickHouseClusterServers
from ingest.ops.local_services import (
    RedisClusterServers,
    ServerProcess,
    ServiceAddresses,
    ServiceError,
    masked_url,
)
from ingest.warehouse.topology import CLUSTER, Topology
from tests.conftest import api_settings
from tests.helpers import AiohttpClient, batch_codes, order_shipped_batch, post_scan
from tests.sink_support import restart_clickhouse, wait_until


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _public_entries(folder: Path) -> list[str]:
    """What under ``folder`` (itself included) another user could read or enter."""
    entries = [folder, *folder.rglob("*")]
    return [f"{p} {_mode(p):o}" for p in entries if not p.is_symlink() and _mode(p) & 0o077]


def _without_password(url: str) -> str:
    """``url`` with its user, if it names one, but no password."""
    parts = urlsplit(url)
    address = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}@{address}" if parts.username else address
    return urlunsplit(parts._replace(netloc=netloc))


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


def test_start_redis_makes_the_data_folder_and_its_files_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    server = local_services.start_redis(data)
    try:
        with redis.Redis.from_url(server.url) as client:
            client.set("seed", "secret")
    finally:
        server.stop()
    assert (data / "redis" / "appendonlydir").is_dir()
    assert _mode(data) == 0o700
    assert _public_entries(data) == []
    assert _mode(data / local_services.REDIS_PASSWORD_FILE) == 0o600


def test_a_shared_folder_is_refused_as_a_data_folder(tmp_path: Path) -> None:
    """Made 0700, ``/tmp`` would shut out its other users; left open, it would expose the
    password file."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(ServiceError, match="is a shared folder"):
        local_services.start_redis(shared)
    assert list(shared.iterdir()) == []
    assert _mode(shared) == 0o1777


@pytest.mark.redis
def test_redis_refuses_a_client_without_the_password(redis_url: str) -> None:
    assert urlsplit(redis_url).hostname == "127.0.0.1"
    with (
        redis.Redis.from_url(_without_password(redis_url)) as stranger,
        pytest.raises(redis.AuthenticationError, match=r"(?i)auth"),
    ):
        stranger.get("seed")
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping()


def test_the_password_is_kept_and_files_of_an_earlier_run_made_private(tmp_path: Path) -> None:
    first = local_services.start_redis(tmp_path)
    first.stop()
    for path in [tmp_path, *tmp_path.rglob("*")]:  # as an older scanward left them
        path.chmod(0o755 if path.is_dir() else 0o644)
    second = local_services.start_redis(tmp_path)
    try:
        assert _password(second.url) == _password(first.url)
        stored = (tmp_path / local_services.REDIS_PASSWORD_FILE).read_text().strip()
        assert stored == _password(first.url)
        assert _public_entries(tmp_path) == []
    finally:
        second.stop()


@pytest.mark.cluster
def test_every_node_of_the_redis_cluster_wants_the_password(
    cluster_servers: RedisClusterServers,
) -> None:
    password = _password(cluster_servers.url)
    for node in cluster_servers.nodes:
        assert _password(node.url) == password
        with (
            redis.Redis.from_url(_without_password(node.url)) as stranger,
            pytest.raises(redis.AuthenticationError, match=r"(?i)auth"),
        ):
            stranger.execute_command("CLUSTER", "INFO")
    assert all(_password(url) == password for url in cluster_servers.primaries())


@pytest.mark.cluster
@pytest.mark.slow
def test_replicas_authenticate_to_their_primaries_and_the_cluster_is_private(
    tmp_path: Path,
) -> None:
    """``wait_until_ok`` waits for every replica's link to its primary: without ``masterauth``
    it never comes up."""
    cluster = local_services.start_redis_cluster(tmp_path, masters=3, replicas=1)
    try:
        primary = cluster.primaries()[0]
        cluster.kill(primary)
        cluster.restart(primary)
        cluster.wait_until_ok()
        assert _public_entries(tmp_path) == []
    finally:
        cluster.stop()


def test_the_services_file_holding_passwords_is_private(tmp_path: Path) -> None:
    ServiceAddresses("redis://:pw@127.0.0.1:1/0", "clickhouse://default:pw@127.0.0.1:2/d").save(
        tmp_path
    )
    assert _mode(tmp_path / local_services.SERVICES_FILE) == 0o600


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cr-t_@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "redis://:a@127.0.0.1:1,redis://:a@127.0.0.1:2",
            "redis://:***@127.0.0.1:1,redis://:***@127.0.0.1:2",
        ),
        (
            "clickhouse://default:x@h:9000/db,clickhouse://default:x@i:9000/db;clickhouse://j/db",
            "clickhouse://default:***@h:9000/db,clickhouse://default:***@i:9000/db;"
            "clickhouse://j/db",
        ),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://user@host:1/", "http://user@host:1/"),
    ],
)
def test_a_printed_url_masks_its_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown


@pytest.mark.clickhouse
def test_clickhouse_refuses_a_client_without_the_password(clickhouse_url: str) -> None:
    _refuses_without_password(clickhouse_url)
    client = Client.from_url(clickhouse_url)
    try:
        assert client.execute("SELECT 1") == [(1,)]
    finally:
        client.disconnect()


def _refuses_without_password(url: str) -> None:
    """A ClickHouse client of ``url`` without its password is refused at login."""
    stranger = Client.from_url(_without_password(url))
    try:
        with pytest.raises(ServerException, match="Password required"):
            stranger.execute("SELECT 1")
    finally:
        stranger.disconnect()


def test_start_clickhouse_keeps_its_password_and_files_private(tmp_path: Path) -> None:
    server = local_services.start_clickhouse(tmp_path)
    server.stop()
    server = local_services.start_clickhouse(tmp_path)
    try:
        stored = (tmp_path / local_services.CLICKHOUSE_PASSWORD_FILE).read_text().strip()
        assert _password(server.url) == stored
        assert stored not in (tmp_path / "clickhouse" / "users.xml").read_text()
        client = Client.from_url(server.url)
        try:
            client.execute("CREATE TABLE seeds (seed String) ENGINE = MergeTree ORDER BY seed")
            client.execute("INSERT INTO seeds VALUES", [("secret",)])
        finally:
            client.disconnect()
        assert _public_entries(tmp_path) == []
    finally:
        server.stop()


@pytest.mark.clickhouse_cluster
def test_the_clickhouse_cluster_wants_the_password_and_its_servers_share_it(
    clickhouse_cluster: Topology,
) -> None:
    """A query over the cluster reaches every shard: each server logs in to the others."""
    for _, _, url in clickhouse_cluster.servers():
        _refuses_without_password(url)
    client = Client.from_url(clickhouse_cluster.shards[0][0])
    try:
        ones = client.execute(f"SELECT dummy FROM cluster('{CLUSTER}', system, one)")
        assert len(ones) == len(clickhouse_cluster.shards)
    finally:
        client.disconnect()


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DEPLOY_REDIS_USER = "redis://scanward:CHANGE-ME-scanward-password@127.0.0.1:{port}/0"
"""The example user and password of ``deploy/redis.conf``."""


def _ping_until_up(url: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + 10
    with redis.Redis.from_url(url, socket_timeout=1) as client:
        while True:
            assert server.process.poll() is None, server.log.read_text()
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)


@pytest.fixture
def production_redis(tmp_path: Path) -> Iterator[str]:
    """redis-server with ``deploy/redis.conf`` on a free port in ``tmp_path``: scanward's URL."""
    binary = local_services.find_binary("redis-server", "redis-server")
    port = local_services.free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    argv = [binary, str(DEPLOY / "redis.conf"), "--port", str(port), "--dir", str(folder)]
    process, log = local_services.spawn("redis", argv, folder)
    server = ServerProcess("redis-server", DEPLOY_REDIS_USER.format(port=port), process, log)
    try:
        _ping_until_up(server.url, server)
        yield server.url
    finally:
        server.stop()


async def test_the_production_redis_conf_lets_scanward_scan_and_no_one_else(
    production_redis: str, aiohttp_client: AiohttpClient, keyring_path: Path, tmp_path: Path
) -> None:
    with (
        redis.Redis.from_url(_without_password(production_redis)) as stranger,
        pytest.raises(redis.AuthenticationError),
    ):
        stranger.get("seed")
    with redis.Redis.from_url(production_redis) as scanward:
        with pytest.raises(redis.exceptions.NoPermissionError):
            scanward.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            scanward.config_get("requirepass")
    client = await aiohttp_client(
        create_app(api_settings(production_redis, keyring_path, tmp_path))
    )
    batch = await order_shipped_batch(client)
    [code] = await batch_codes(client, batch["batch_id"], limit=1)
    assert (await post_scan(client, {"code": code}))["verdict"] == "genuine"


def test_the_production_clickhouse_users_want_their_passwords_and_analysts_only_read(
    tmp_path: Path,
) -> None:
    server = local_services.start_clickhouse(tmp_path)
    server.stop()
    shutil.copy(DEPLOY / "clickhouse" / "users.xml", tmp_path / "clickhouse" / "users.xml")
    server = restart_clickhouse(server, tmp_path)
    port = urlsplit(server.url).port
    try:
        scanward = Client("127.0.0.1", port, user="scanward", password="change-me-scanward")
        analyst = Client("127.0.0.1", port, user="analyst", password="change-me-analyst")
        wait_until(lambda: _answers(scanward), 30, "ClickHouse")
        scanward.execute("CREATE TABLE seeds (seed String) ENGINE = MergeTree ORDER BY seed")
        scanward.execute("INSERT INTO seeds VALUES", [("secret",)])
        assert analyst.execute("SELECT seed FROM seeds") == [("secret",)]
        with pytest.raises(ServerException, match="readonly"):
            analyst.execute("INSERT INTO seeds VALUES", [("mine",)])
        for user in ("default", "scanward", "analyst"):
            _refuses_without_password(f"clickhouse://{user}@127.0.0.1:{port}/default")
        scanward.disconnect()
        analyst.disconnect()
    finally:
        server.stop()


def _answers(client: Client) -> bool:
    try:
        return bool(client.execute("SELECT 1"))
    except (OSError, EOFError, NetworkError, SocketTimeoutError):
        return False


@pytest.mark.clickhouse_cluster
def test_a_replica_s_parts_are_fetched_only_with_the_password(
    clickhouse_cluster_servers: ClickHouseClusterServers,
) -> None:
    """The interserver port, where replicas fetch each other's parts, asks for credentials."""
    config = (clickhouse_cluster_servers.folder / "clickhouse-s1r1" / "config.xml").read_text()
    found = re.search(r"<interserver_http_port>(\d+)<", config)
    assert found is not None
    request = urllib.request.Request(
        f"http://127.0.0.1:{found.group(1)}/?endpoint=DataPartsExchange:/x&part=all_1_1_0",
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5).close()
    assert refused.value.code == 401

"""The local Redis Cluster harness (`start_redis_cluster`) and `scanward up`'s options for it."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from ingest.cli import main
from ingest.ops import local_services
from ingest.ops.local_services import RedisClusterServers, ServiceError

_NODE_URL = r"redis://:[\w-]+@127\.0\.0\.1:(\d+)"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _cluster_info(url: str) -> dict[str, str]:
    with redis.Redis.from_url(url, decode_responses=True) as client:
        text = str(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


@pytest.mark.cluster
def test_the_cluster_spreads_every_slot_over_three_primaries(
    cluster_servers: RedisClusterServers,
) -> None:
    assert re.fullmatch(f"{_NODE_URL}(,{_NODE_URL}){{2}}", cluster_servers.url)
    assert cluster_servers.url == ",".join(node.url for node in cluster_servers.nodes)
    assert all(_port(node.url) <= 55_535 for node in cluster_servers.nodes)
    for node in cluster_servers.nodes:
        assert _cluster_info(node.url)["cluster_state"] == "ok"
        with redis.Redis.from_url(node.url) as client:
            slots = client.execute_command("CLUSTER", "SLOTS")
        covered = sorted(slot for start, end, *_ in slots for slot in range(start, end + 1))
        assert covered == list(range(16_384))
        owners = sorted({cluster_servers.url_at(owner[1]) for _, _, owner, *_ in slots})
        assert owners == cluster_servers.primaries()
    assert sorted(cluster_servers.primaries()) == sorted(n.url for n in cluster_servers.nodes)


@pytest.mark.cluster
def test_cluster_url_is_an_empty_cluster_a_cluster_client_reaches(cluster_url: str) -> None:
    urls = cluster_url.split(",")
    with RedisCluster.from_url(urls[0]) as client:
        assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == 0
        for key in ("{a}", "{b}", "{c}"):  # slots 15495, 3300 and 7365: one on each primary
            client.set(key, 1)
    for url in urls:
        with redis.Redis.from_url(url) as node:
            assert node.dbsize() == 1


@pytest.mark.cluster
def test_a_node_killed_by_pid_restarts_into_the_cluster_and_stop_ends_every_node(
    tmp_path: Path,
) -> None:
    cluster = local_services.start_redis_cluster(tmp_path)
    try:
        assert sorted((tmp_path / "redis-cluster").iterdir()) == sorted(
            tmp_path / "redis-cluster" / str(_port(node.url)) for node in cluster.nodes
        )
        victim = cluster.primaries()[0]
        cluster.kill(victim)
        assert cluster.node(victim).process.returncode == -9
        restarted = cluster.restart(victim)
        cluster.wait_until_ok()
        assert cluster.node(victim) is restarted
        assert _cluster_info(victim)["cluster_state"] == "ok"
    finally:
        cluster.stop()
    for node in cluster.nodes:
        assert node.process.returncode is not None
        with pytest.raises(ProcessLookupError):
            os.kill(node.pid, 0)


@pytest.mark.cluster
def test_a_node_that_exits_at_start_is_named_and_the_others_are_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free_port = local_services.free_port
    while (busy := free_port()) > 55_535:
        pass
    offered: list[int] = []

    def busy_first() -> int:
        offered.append(free_port() if offered else busy)
        return offered[-1]

    monkeypatch.setattr(local_services, "free_port", busy_first)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", busy))
        with pytest.raises(ServiceError) as failure:
            local_services.start_redis_cluster(tmp_path)
    message = str(failure.value)
    assert message.startswith(f"redis cluster node 127.0.0.1:{busy} exited at start: ")
    assert "\n" not in message
    assert len(offered) >= 3
    assert not any(_answers(port) for port in offered)


def test_a_missing_redis_cli_says_which_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name, **_: None if name == "redis-cli" else name)
    with pytest.raises(ServiceError, match="apt-get install redis-tools"):
        local_services.start_redis_cluster(tmp_path)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--redis-masters", "2"], "at least 3 masters"),
        (["--redis-masters", "3", "--redis-replicas", "-1"], "must not be negative"),
    ],
)
def test_up_refuses_too_small_a_cluster(
    up_env: Path, capsys: pytest.CaptureFixture[str], options: list[str], error: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--data-dir", str(up_env), *options])
    assert exit_.value.code == 2
    assert error in capsys.readouterr().err

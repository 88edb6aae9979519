from __future__ import annotations

from pathlib import Path

import pytest
import redis
from clickhouse_driver import Client

from ingest.ops import local_services
from ingest.ops.local_services import ServiceAddresses, ServiceError


@pytest.mark.clickhouse
def test_clickhouse_answers_queries(clickhouse_url: str) -> None:
    client = Client.from_url(clickhouse_url)
    try:
        assert client.execute("SELECT 1 + 1") == [(2,)]
    finally:
        client.disconnect()


@pytest.mark.redis
def test_redis_syncs_its_append_only_file_before_answering(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}


def test_a_missing_binary_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *_a, **_k: None)
    with pytest.raises(ServiceError, match="apt-get install clickhouse-server"):
        local_services.start_clickhouse(Path("/nonexistent"))


def test_a_started_server_is_stopped_by_pid(tmp_path: Path) -> None:
    server = local_services.start_redis(tmp_path)
    server.stop()
    assert server.process.returncode is not None


def test_addresses_are_recorded_in_the_data_folder(tmp_path: Path) -> None:
    assert ServiceAddresses.load(tmp_path) is None
    addresses = ServiceAddresses("redis://127.0.0.1:1/0", "clickhouse://127.0.0.1:2/default", None)
    addresses.save(tmp_path)
    assert ServiceAddresses.load(tmp_path) == addresses

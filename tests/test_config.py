from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import ConfigError, Settings


def test_defaults_and_environment() -> None:
    settings = Settings.from_env({"SCANWARD_PORT": "9000", "SCANWARD_DATA_DIR": "/tmp/x"})
    assert settings.port == 9000
    assert settings.data_dir == Path("/tmp/x")
    assert settings.keyring_file == Path("/tmp/x/keyring.bin")
    assert settings.redis_url is None
    assert Settings.from_env({"SCANWARD_MEMBER_TIERS": "3"}).member_tiers == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCANWARD_PORT", "eighty"),
        ("SCANWARD_PORT", "70000"),
        ("SCANWARD_REDIS_URL", "http://x"),
        ("SCANWARD_REDIS_URL", "redis://a:7000,http://b:7001"),
        ("SCANWARD_REDIS_URL", " , "),
        ("SCANWARD_ADMIN_TOKEN", "short"),
        ("SCANWARD_MAX_BATCH_QUANTITY", "0"),
        ("SCANWARD_CLICKHOUSE_URL", "clickhouse://"),
        ("SCANWARD_MEMBER_TIERS", "0"),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_a_cluster_is_any_of_its_nodes_comma_separated() -> None:
    urls = "redis://10.0.0.1:7000, redis://10.0.0.2:7000/"
    settings = Settings.from_env({"SCANWARD_REDIS_URL": urls})
    assert settings.redis_url == "redis://10.0.0.1:7000,redis://10.0.0.2:7000"


def test_toml_file_under_environment(tmp_path: Path) -> None:
    config = tmp_path / "scanward.toml"
    config.write_text('port = 7000\nresolver_url = "https://id.brand.example"\n')
    env = {"SCANWARD_CONFIG": str(config), "SCANWARD_PORT": "7001"}
    settings = Settings.from_env(env)
    assert settings.port == 7001
    assert settings.resolver_url == "https://id.brand.example"


def test_toml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "scanward.toml"
    config.write_text("prot = 7000\n")
    with pytest.raises(ConfigError, match="unknown settings prot"):
        Settings.from_env({"SCANWARD_CONFIG": str(config)})
    config.write_text("port = 'x'\n")
    with pytest.raises(ConfigError, match="port in"):
        Settings.from_env({"SCANWARD_CONFIG": str(config)})

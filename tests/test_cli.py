from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from codes.batch_index import BatchIndex
from codes.batches import Batch
from codes.keyring import Keyring
from codes.verify import Verifier
from ingest.cli import main
from ingest.ops.local_services import ServiceAddresses, ServiceError, data_folder_lock, free_port

SECRET = "cli secret"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SCANWARD_REDIS_URL", "SCANWARD_CLICKHOUSE_URL", "SCANWARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCANWARD_KEYRING_SECRET", SECRET)
    monkeypatch.setenv("SCANWARD_DATA_DIR", str(tmp_path))
    return tmp_path


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return orjson.loads(capsys.readouterr().out)


def test_keys_lifecycle(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init"]) == 0
    assert main(["keys", "init"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["keys", "retire", "0"]) == 0
    listed = _json(capsys)
    assert listed == [
        {**listed[0], "key_id": 0, "active": False, "current": False},  # type: ignore[index]
        {**listed[1], "key_id": 1, "active": True, "current": True},  # type: ignore[index]
    ]
    assert main(["keys", "retire", "1"]) == 1
    assert "last active key" in capsys.readouterr().err


def test_wrong_keyring_secret_is_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["keys", "init"]) == 0
    monkeypatch.setenv("SCANWARD_KEYRING_SECRET", "other")
    assert main(["keys", "list"]) == 1
    assert "SCANWARD_KEYRING_SECRET is wrong" in capsys.readouterr().err


def test_batch_commands_need_a_running_stack(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "show", "B1"]) == 1
    assert "scanward up" in capsys.readouterr().err


@pytest.mark.redis
def test_batch_commands_use_the_recorded_services(
    data_dir: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ServiceAddresses(redis_url, "clickhouse://127.0.0.1:1/default").save(data_dir)
    main(["keys", "init"])
    capsys.readouterr()
    assert (
        main(["batch", "create", "--sku", "S", "--gtin", "4006381333931", "--quantity", "50"]) == 0
    )
    created = _json(capsys)
    assert isinstance(created, dict)
    output = data_dir / "codes.txt"
    assert main(["batch", "codes", created["batch_id"], "--output", str(output)]) == 0
    verifier = Verifier(
        Keyring.load(data_dir / "keyring.bin", SECRET),
        BatchIndex([Batch.from_redis({k: str(v) for k, v in created.items()})]),
    )
    assert len({verifier.verify(c).serial for c in output.read_text().split()}) == 50
    assert main(["batch", "revoke", created["batch_id"]]) == 0
    assert _json(capsys)["status"] == "revoked"  # type: ignore[index]
    assert main(["batch", "create", "--sku", "S", "--gtin", "123", "--quantity", "5"]) == 1
    assert "gtin" in capsys.readouterr().err


def test_stale_or_damaged_services_file_is_one_clear_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["keys", "init"])
    ServiceAddresses(f"redis://127.0.0.1:{free_port()}/0", "clickhouse://127.0.0.1:1/d").save(
        data_dir
    )
    assert main(["batch", "show", "B1"]) == 1
    assert "is 'scanward up' running?" in capsys.readouterr().err
    (data_dir / "services.json").write_text("{")
    assert main(["batch", "show", "B1"]) == 1
    assert "is damaged" in capsys.readouterr().err


def test_one_stack_per_data_folder(data_dir: Path) -> None:
    expected = pytest.raises(ServiceError, match="another 'scanward up'")
    with data_folder_lock(data_dir), expected, data_folder_lock(data_dir):
        pass


def test_negative_offsets_are_refused(data_dir: Path) -> None:
    with pytest.raises(SystemExit):
        main(["batch", "codes", "B1", "--offset", "-5"])


@pytest.mark.redis
def test_token_create_issues_a_token_with_an_id_and_an_expiry(
    data_dir: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ServiceAddresses(redis_url, "clickhouse://127.0.0.1:1/default").save(data_dir)
    assert main(["token", "create", "--role", "line", "--name", "L1", "--expires-in", "60"]) == 0
    issued = _json(capsys)
    assert isinstance(issued, dict)
    assert issued["token"].startswith("sw_")
    assert issued["id"].startswith("tok_")
    assert issued["expires_at"] is not None
    assert main(["token", "create", "--role", "line", "--name", "L1"]) == 0
    assert _json(capsys)["expires_at"] is None  # type: ignore[index]
    with pytest.raises(SystemExit):
        main(["token", "create", "--role", "line", "--name", "L1", "--expires-in", "0"])

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ingest.cli import main
from ingest.ops.local_services import ServiceAddresses
from tests.sink_support import fresh_database


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SCANWARD_REDIS_URL", "SCANWARD_CLICKHOUSE_URL", "SCANWARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCANWARD_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def database(clickhouse_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with fresh_database(clickhouse_url, migrated=False) as url:
        monkeypatch.setenv("SCANWARD_CLICKHOUSE_URL", url)
        yield url


@pytest.mark.clickhouse
def test_migrate_prints_what_it_applied(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == (
        "0001_scans\n0002_scan_fraud_columns\n0003_fraud_alerts\n0004_draws\n0005_rollups\n0006_mirrors\n"
    )
    assert main(["migrate"]) == 0
    output = capsys.readouterr()
    assert (output.out, output.err) == ("", "the schema is up to date\n")


SQL = "SELECT 'a\\tb''c' AS s, [1, 2] AS a, toDate('2026-01-02') AS d, nan AS f, NULL AS n"


@pytest.mark.clickhouse
def test_sql_prints_tab_separated_like_clickhouse_client(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", SQL]) == 0
    assert capsys.readouterr().out == "a\\tb\\'c\t[1,2]\t2026-01-02\tnan\t\\N\n"


@pytest.mark.clickhouse
def test_sql_json_is_an_array_of_objects(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", SQL, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == [
        {"s": "a\tb'c", "a": [1, 2], "d": "2026-01-02", "f": None, "n": None}
    ]


@pytest.mark.clickhouse
def test_a_failing_query_is_one_line(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT * FROM no_such_table"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("scanward: ClickHouse: Code: 60. ")
    assert "no_such_table" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize("command", [["migrate"], ["sql", "SELECT 1"], ["sink"]])
def test_without_clickhouse_the_commands_say_how_to_get_one(
    data_dir: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 1
    error = capsys.readouterr().err
    assert "scanward up" in error
    assert error.count("\n") == 1


def test_an_unreachable_clickhouse_is_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ServiceAddresses("redis://127.0.0.1:1/0", "clickhouse://127.0.0.1:1/default").save(data_dir)
    assert main(["sql", "SELECT 1"]) == 1
    assert capsys.readouterr().err == (
        "scanward: ClickHouse: Code: 210. Connection refused (127.0.0.1:1)\n"
    )


@pytest.mark.clickhouse
def test_rollups_rebuild_prints_the_rows_of_each_rollup(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["rollups", "rebuild", "--since", "2026-01-01", "--until", "2026-01-08"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "scans_hourly": 0,
        "scanners_daily": 0,
        "diversion_daily": 0,
        "counterfeits_daily": 0,
        "awards_daily": 0,
    }
    assert main(["rollups", "rebuild", "--since", "2026-01-08", "--until", "2026-01-01"]) == 1
    assert "--until must be after --since" in capsys.readouterr().err

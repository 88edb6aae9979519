"""``scanward export scans``: a date range of scans to CSV or Parquet, streamed block by block."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.cli import main
from ingest.warehouse.client import connect
from ingest.warehouse.export import export_scans

FIRST_DAY = date(2026, 11, 20)
PER_DAY = 5


@pytest.fixture
def scans(database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Five scans on each of three days (the 20th to the 22nd), inserted newest first."""
    rows = []
    for day in range(2, -1, -1):
        for number in range(PER_DAY - 1, -1, -1):
            moment = datetime(2026, 11, 20, 8, tzinfo=UTC) + timedelta(days=day, minutes=number)
            rows.append(
                {
                    "date": moment.date(),
                    "time": moment.replace(tzinfo=None),
                    "time_ms": int(moment.timestamp() * 1000),
                    "scan_id": f"s-{day}-{number}",
                    "code": f'CODE,{day}"{number}',  # a comma and a quote: CSV must quote it
                    "serial": 1_000_000 + day * 10 + number,
                    "verdict": "genuine",
                    "lat": 31.23,
                    "lon": math.nan if number == 0 else 121.47,
                    "member_id": "会员-1",
                    "risk": number % 3,
                }
            )
    client = connect(database)
    client.execute(f"INSERT INTO scans ({', '.join(rows[0])}) VALUES", rows)
    client.disconnect()
    monkeypatch.setenv("SCANWARD_CLICKHOUSE_URL", database)
    return database


@pytest.mark.clickhouse
def test_csv_holds_the_days_asked_for_in_scan_order(scans: str) -> None:
    output = io.BytesIO()
    client = connect(scans)
    count = export_scans(
        client, FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=2), "csv", output
    )
    client.disconnect()
    header, *rows = list(csv.reader(io.StringIO(output.getvalue().decode())))
    assert count == len(rows) == PER_DAY
    assert header[:4] == ["date", "time", "time_ms", "client_time_ms"]
    assert "flags" not in header  # materialized from flag_list: not stored
    assert {"risk", "distributor_id", "stream_seq"} <= set(header)
    by_name = [dict(zip(header, row, strict=True)) for row in rows]
    assert [row["scan_id"] for row in by_name] == [f"s-1-{n}" for n in range(PER_DAY)]
    assert by_name[2]["code"] == 'CODE,1"2'
    assert by_name[0]["lon"] == "nan"
    assert by_name[0]["member_id"] == "会员-1"
    assert by_name[0]["date"] == "2026-11-21"


@pytest.mark.clickhouse
def test_parquet_keeps_the_column_types_and_is_written_a_block_at_a_time(
    scans: str, tmp_path: Path
) -> None:
    path = tmp_path / "scans.parquet"
    client = connect(scans)
    with path.open("wb") as output:
        count = export_scans(client, FIRST_DAY, None, "parquet", output, block_rows=4)
    client.disconnect()
    parquet = pq.ParquetFile(path)
    assert count == parquet.metadata.num_rows == 3 * PER_DAY
    assert parquet.metadata.num_row_groups == 4  # 15 rows in blocks of 4
    table = parquet.read()
    assert table.schema.field("serial").type == pa.uint64()
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("time").type == pa.timestamp("ms")  # Parquet has no seconds
    assert table.column("time").to_pylist()[0] == datetime(2026, 11, 20, 8)
    assert table.schema.field("risk").type == pa.uint8()
    assert table.schema.field("accuracy_m").type == pa.float32()
    assert table.column("time_ms").to_pylist() == sorted(table.column("time_ms").to_pylist())
    assert table.column("date").to_pylist()[0] == FIRST_DAY
    assert table.column("code").to_pylist()[0] == 'CODE,0"0'


@pytest.mark.clickhouse
def test_the_command_writes_the_file_and_says_how_many(
    scans: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.parquet"
    arguments = ["export", "scans", "--since", "2026-11-22", "--format", "parquet"]
    assert main([*arguments, "--output", str(path)]) == 0
    assert pq.read_table(path).num_rows == PER_DAY
    assert capsys.readouterr().err == f"exported {PER_DAY} scans\n"
    assert main(["export", "scans", "--since", "2026-12-01"]) == 0
    output = capsys.readouterr()
    assert output.out.startswith("date,time,time_ms,")
    assert output.out.count("\n") == 1
    assert output.err == "exported 0 scans\n"


@pytest.mark.clickhouse
def test_an_empty_or_reversed_range_is_refused(
    scans: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "scans", "--since", "2026-11-22", "--until", "2026-11-22"]) == 1
    assert "--until must be after --since" in capsys.readouterr().err

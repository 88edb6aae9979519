from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.sink.table import COLUMNS, DRAW_COLUMNS
from ingest.warehouse.client import connect
from ingest.warehouse.schema import MigrationError, apply_migrations, load_migrations
from tests.sink_support import fresh_database, query

SCANS = {
    "date": "Date",
    "time": "DateTime",
    "time_ms": "UInt64",
    "client_time_ms": "Int64",
    "scan_id": "String",
    "code": "String",
    "serial": "UInt64",
    "key_id": "UInt8",
    "batch_id": "String",
    "sku": "String",
    "gtin": "String",
    "verdict": "String",
    "genuine": "UInt8",
    "first_scan": "UInt8",
    "scan_count": "UInt32",
    "distinct_devices": "UInt16",
    "flag_list": "String",
    "flags": "Array(String)",
    "flag_details": "String",
    "lat": "Float64",
    "lon": "Float64",
    "accuracy_m": "Float32",
    "has_location": "UInt8",
    "member_id": "String",
    "device_id": "String",
    "ip": "String",
    "latency_us": "UInt32",
    "risk": "UInt8",
    "distributor_id": "String",
    "surfaced_in": "String",
    "distance_km": "Float32",
    "stream_partition": "UInt8",
    "stream_ms": "UInt64",
    "stream_seq": "UInt64",
    "stream_index": "UInt16",
}

MIGRATIONS = (
    "0001_scans",
    "0002_scan_fraud_columns",
    "0003_fraud_alerts",
    "0004_draws",
    "0005_rollups",
    "0006_mirrors",
)

DRAWS = {
    "date": "Date",
    "time": "DateTime",
    "time_ms": "UInt64",
    "campaign_id": "String",
    "day": "Date",
    "seq": "UInt64",
    "config_version": "UInt32",
    "scan_id": "String",
    "member_id": "String",
    "code": "String",
    "serial": "UInt64",
    "tier": "UInt8",
    "risk": "UInt8",
    "draw_value": "UInt64",
    "won": "UInt8",
    "prize_id": "String",
    "prize_kind": "String",
    "prize_value": "Int64",
    "guaranteed": "UInt8",
    "available": "UInt32",
    "points_balance": "Int64",
    "stream_ms": "UInt64",
}


@pytest.fixture
def empty_database(clickhouse_url: str) -> Iterator[str]:
    with fresh_database(clickhouse_url, migrated=False) as url:
        yield url


@pytest.mark.clickhouse
def test_migrations_apply_once_and_are_recorded(empty_database: str) -> None:
    client = connect(empty_database)
    try:
        assert apply_migrations(client) == list(MIGRATIONS)
        assert apply_migrations(client) == []
    finally:
        client.disconnect()
    assert query(
        empty_database, "SELECT version, name FROM schema_migrations ORDER BY version"
    ) == [(int(name[:4]), name) for name in MIGRATIONS]


@pytest.mark.clickhouse
def test_scans_has_the_columns_the_sink_writes_and_flags_from_flag_list(
    empty_database: str,
) -> None:
    client = connect(empty_database)
    try:
        apply_migrations(client)
        described = client.execute("DESCRIBE TABLE scans")
        client.execute(
            "INSERT INTO scans (scan_id, flag_list) VALUES",
            [("a", "velocity,geo"), ("b", "")],
        )
    finally:
        client.disconnect()
    assert {row[0]: row[1] for row in described} == SCANS
    assert [row[0] for row in described if row[2] != "MATERIALIZED"] == list(COLUMNS)
    assert query(empty_database, "SELECT scan_id, flags FROM scans ORDER BY scan_id") == [
        ("a", ["velocity", "geo"]),
        ("b", []),
    ]
    assert query(empty_database, "SELECT count() FROM scans WHERE has(flags, 'geo')") == [(1,)]


@pytest.mark.clickhouse
def test_draws_has_the_columns_the_sink_writes_and_awards_shows_the_won(
    empty_database: str,
) -> None:
    client = connect(empty_database)
    try:
        apply_migrations(client)
        draws = client.execute("DESCRIBE TABLE draws")
        awards = client.execute("DESCRIBE TABLE awards")
        client.execute("INSERT INTO draws (seq, won) VALUES", [(1, 0), (2, 1)])
    finally:
        client.disconnect()
    assert {row[0]: row[1] for row in draws} == DRAWS
    assert [row[0] for row in draws] == list(DRAW_COLUMNS)
    assert [row[:2] for row in awards] == [row[:2] for row in draws]
    assert query(empty_database, "SELECT seq FROM awards") == [(2,)]


@pytest.mark.clickhouse
def test_files_apply_in_version_order_with_several_statements(
    empty_database: str, tmp_path: Path
) -> None:
    (tmp_path / "0002_second.sql").write_text(
        "-- two statements\nCREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Memory;\n\n"
        "INSERT INTO b SELECT count() FROM a;\n"
    )
    (tmp_path / "0001_first.sql").write_text(
        "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory;\n-- trailing comment\n"
    )
    (tmp_path / "notes.txt").write_text("not a migration")
    migrations = load_migrations(tmp_path)
    assert [(m.version, m.name, len(m.statements)) for m in migrations] == [
        (1, "0001_first", 1),
        (2, "0002_second", 2),
    ]
    client = connect(empty_database)
    try:
        assert apply_migrations(client, migrations) == ["0001_first", "0002_second"]
    finally:
        client.disconnect()
    assert query(empty_database, "SELECT x FROM b") == [(0,)]


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"1_short.sql": "SELECT 1;"}, "named NNNN_name.sql"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}, "two migrations"),
        ({"0001_empty.sql": "-- nothing\n"}, "no statement"),
    ],
)
def test_malformed_migration_files_are_refused(
    tmp_path: Path, files: dict[str, str], error: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=error):
        load_migrations(tmp_path)


def test_the_migrations_ship_with_the_package() -> None:
    assert [m.name for m in load_migrations()] == list(MIGRATIONS)

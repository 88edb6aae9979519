"""Forward compatibility: the migrations and the documented queries on a current ClickHouse,
in process through chdb, answer as they do on Debian's 18.16.

The known data set is made on 18.16 by the real sink, then copied row by row into chdb, whose
materialized views fill the rollups as ClickHouse's did.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from chdb import session

from ingest.warehouse.client import connect, stored_columns
from ingest.warehouse.schema import apply_migrations
from tests.analytics_support import load_analytics_data
from tests.test_analytics_docs import examples

COPIED_TABLES = ("scans", "draws", "batches", "shipments", "distributors")
_new_session: Any = session.Session  # chdb's functions carry no type hints


class _Chdb:
    """The calls ``apply_migrations`` makes of a clickhouse-driver client, on a chdb session."""

    def __init__(self, chdb: Any) -> None:
        self._session = chdb

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if params:
            sql = sql % {name: _literal(value) for name, value in params.items()}
        text = self.text(sql, "JSONCompact")
        return [tuple(row) for row in orjson.loads(text)["data"]] if text else []

    def text(self, sql: str, output_format: str = "TSV") -> str:
        return bytes(self._session.query(sql, output_format).bytes()).decode()


def _literal(value: object) -> str:
    """``value`` as a ClickHouse SQL literal."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return "[" + ", ".join(map(_literal, value)) + "]"
    return repr(value)


@pytest.fixture
def chdb(tmp_path: Path) -> Iterator[_Chdb]:
    current = _new_session(str(tmp_path / "chdb"))
    try:
        yield _Chdb(current)
    finally:
        current.close()


def test_the_migrations_apply_on_a_current_clickhouse(chdb: _Chdb) -> None:
    applied = apply_migrations(chdb)
    assert applied[0] == "0001_scans"
    assert apply_migrations(chdb) == []
    tables = set(chdb.text("SHOW TABLES").split())
    assert {"scans", "draws", "awards", "fraud_alerts", "scans_hourly", "batches"} <= tables
    assert int(chdb.text("SELECT version()").split(".")[0]) >= 24  # not 18.16


@pytest.mark.redis
@pytest.mark.clickhouse
def test_the_documented_queries_answer_the_same_on_a_current_clickhouse(
    chdb: _Chdb, streams: redis.Redis, redis_url: str, database: str
) -> None:
    load_analytics_data(streams, redis_url, database)
    apply_migrations(chdb)
    old = connect(database)
    for table in COPIED_TABLES:
        names = [name for name, _ in stored_columns(old, table)]
        rows = old.execute(f"SELECT {', '.join(names)} FROM {table}")
        values = ", ".join("(" + ", ".join(map(_literal, row)) + ")" for row in rows)
        chdb.text(f"INSERT INTO {table} ({', '.join(names)}) VALUES {values}")
    old.disconnect()
    wrong = [
        f"{sql}\n--- documented (18.16):\n{answer}\n--- chdb:\n{printed}"
        for sql, answer in examples()
        if (printed := chdb.text(sql).rstrip("\n")) != answer
    ]
    assert not wrong, "\n\n".join(wrong)

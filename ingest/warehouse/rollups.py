"""``scanward rollups rebuild``: the rollups of some days computed again from the raw tables.

A rollup is the table a materialized view of the migrations writes to (``0005_rollups``). Its
rows can fall short of the raw table's: rows stored before the view existed were never rolled
up, and an insert that a view fails (after the rows reached ``scans``, see DESIGN.md) may have
reached some rollups and not others, while the sink's retry, finding the rows stored, inserts
nothing again. Rebuilding a day deletes the rollup's rows of the day (a mutation, waited for)
and inserts the view's own SELECT over the raw rows of the day.

Rows the sink inserts into a day while it is rebuilt would be counted twice (by the view and by
the rebuild): only days before today (UTC) can be rebuilt, and the sink's backlog should be
empty. Rebuilding is not atomic: a rollup whose rebuild fails may lack the days' rows until the
rebuild is run again, which the error says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clickhouse_driver.errors import Error as ClickHouseError

from ingest.warehouse.client import describe, stored_columns
from ingest.warehouse.schema import Migration, load_migrations

_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS \w+ TO (?P<table>\w+) AS\s+(?P<select>SELECT\b.*)",
    re.DOTALL,
)
_SOURCE = re.compile(r"\bFROM (?P<source>\w+)")
_DAYS = "date >= %(since)s AND date < %(until)s"
_UNFINISHED_MUTATIONS = """
SELECT count() FROM system.mutations
WHERE database = currentDatabase() AND table = %(table)s AND is_done = 0
"""
MUTATION_TIMEOUT_S = 600.0


class RollupError(ValueError):
    """Days that cannot be rebuilt; the message says why."""


@dataclass(frozen=True, slots=True)
class Rollup:
    table: str
    source: str
    """The raw table the view reads."""
    select: str
    """The view's SELECT."""

    def select_of_days(self) -> str:
        """The view's SELECT over the raw rows of the days ``%(since)s`` to ``%(until)s``."""
        only_days = f"FROM (SELECT * FROM {self.source} WHERE {_DAYS})"
        return _SOURCE.sub(lambda _: only_days, self.select.replace("%", "%%"), count=1)


def rollups(migrations: Sequence[Migration] | None = None) -> list[Rollup]:
    """The rollups the migrations define, in order (a view made again later replaces the first)."""
    found: dict[str, Rollup] = {}
    for migration in load_migrations() if migrations is None else migrations:
        for statement in migration.statements:
            if view := _VIEW.search(statement):
                source = _SOURCE.search(view["select"])
                if source is None:
                    raise RollupError(f"{migration.name}: a view of {view['table']} reads nothing")
                found[view["table"]] = Rollup(view["table"], source["source"], view["select"])
    return list(found.values())


def rebuild(client: Any, since: date, until: date, today: date | None = None) -> dict[str, int]:
    """Rebuilds every rollup for the days from ``since`` to the day before ``until``; the rows
    each rollup holds for them now (before ClickHouse merges them)."""
    today = today or datetime.now(UTC).date()
    if until <= since:
        raise RollupError("--until must be after --since (it is the first day left out)")
    if until > today:
        raise RollupError(
            f"only days before today ({today}, UTC) can be rebuilt: the sink may still write "
            "rows of today, which would then be counted twice"
        )
    days = {"since": since, "until": until}
    rows = {}
    for rollup in rollups():
        try:
            rows[rollup.table] = _rebuild(client, rollup, days)
        except (ClickHouseError, OSError, EOFError) as error:
            raise RollupError(
                f"rebuilding {rollup.table} failed ({describe(error)}): its rows of those days "
                f"may be missing until the same rebuild is run again (rebuilt: {', '.join(rows)})"
            ) from error
    return rows


def _rebuild(client: Any, rollup: Rollup, days: dict[str, date]) -> int:
    client.execute(f"ALTER TABLE {rollup.table} DELETE WHERE {_DAYS}", days)
    _wait_for_mutations(client, rollup.table)
    columns = ", ".join(name for name, _ in stored_columns(client, rollup.table))
    client.execute(
        f"INSERT INTO {rollup.table} ({columns}) SELECT {columns} FROM ({rollup.select_of_days()})",
        days,
    )
    [(count,)] = client.execute(f"SELECT count() FROM {rollup.table} WHERE {_DAYS}", days)
    return int(count)


def _wait_for_mutations(client: Any, table: str) -> None:
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    while client.execute(_UNFINISHED_MUTATIONS, {"table": table})[0][0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the deletion of its rows did not finish in {MUTATION_TIMEOUT_S} s")
        time.sleep(0.05)

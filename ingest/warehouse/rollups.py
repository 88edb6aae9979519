"""``scanward rollups rebuild``: the rollups of some days computed again from the raw tables.

A rollup is the table a materialized view of the migrations writes to (``0005_rollups``). Its
rows can fall short of the raw table's: rows stored before the view existed were never rolled
up, and an insert that a view fails (after the rows reached ``scans``, see DESIGN.md) may have
reached some rollups and not others, while the sink's retry, finding the rows stored, inserts
nothing again. Rebuilding a day deletes the rollup's rows of the day (a mutation, waited for)
and inserts the view's own SELECT over the raw rows of the day.

The rebuild runs shard by shard, as the views roll up (``ingest.warehouse.cluster_schema``):
on one server it is that server's tables; on a cluster, one live replica of each shard (the
first of its URLs that answers) deletes from ``<rollup>_local`` and inserts the view's SELECT of
``<source>_local`` (the Distributed tables refuse ``ALTER ... DELETE``). The shard's other
replicas receive the deletion and the inserted part by replication; a replica that is down
meanwhile receives them from the shard's replication log once it is back, and until it has
caught up, a query that reads it still sees its old rows of those days. A shard none of whose
replicas answers fails the rebuild.

Rows the sink inserts into a day while it is rebuilt would be counted twice (by the view and by
the rebuild): only days before today (UTC) can be rebuilt, and the sink's backlog should be
empty. Rebuilding is not atomic: a rollup whose rebuild fails may lack the days' rows until the
rebuild is run again, which the error says.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ingest.warehouse import client as clickhouse_client
from ingest.warehouse.cluster_schema import LOCAL
from ingest.warehouse.schema import Migration, load_migrations
from ingest.warehouse.topology import Topology

_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS \w+ TO (?P<table>\w+) AS\s+(?P<select>SELECT\b.*)",
    re.DOTALL,
)
_SOURCE = re.compile(r"\bFROM (?P<source>\w+)")
_DAYS = "date >= %(since)s AND date < %(until)s"
_MUTATIONS = """
SELECT mutation_id, is_done FROM system.mutations
WHERE database = currentDatabase() AND table = %(table)s
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

    def on_shard(self, suffix: str) -> Rollup:
        """The rollup as a shard's view has it: its table and source named with ``suffix``, the
        shard's local tables' (none on one server)."""
        return dataclasses.replace(self, table=self.table + suffix, source=self.source + suffix)


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


@dataclass(frozen=True, slots=True)
class _Shard:
    """Where the rollups of a shard are rebuilt: a client of one live replica of it, and the
    suffix of its tables' names."""

    client: Any
    suffix: str
    where: str
    """The shard in messages ("" on one server)."""


def _shards(topology: Topology) -> list[_Shard]:
    suffix = LOCAL if topology.clustered else ""
    return [
        _Shard(
            # a shard's replicas as one URL: the client takes the first that answers
            clickhouse_client.connect(",".join(replicas)),
            suffix,
            f" on shard {number}" if topology.clustered else "",
        )
        for number, replicas in enumerate(topology.shards, 1)
    ]


def rebuild(
    topology: Topology, since: date, until: date, today: date | None = None
) -> dict[str, int]:
    """Rebuilds every rollup on every shard of ``topology`` for the days from ``since`` to the
    day before ``until``; the rows each rollup holds for them now (all shards' together, before
    ClickHouse merges them)."""
    today = today or datetime.now(UTC).date()
    if until <= since:
        raise RollupError("--until must be after --since (it is the first day left out)")
    if until > today:
        raise RollupError(
            f"only days before today ({today}, UTC) can be rebuilt: the sink may still write "
            "rows of today, which would then be counted twice"
        )
    days = {"since": since, "until": until}
    shards = _shards(topology)
    rows: dict[str, int] = {}
    try:
        for rollup in rollups():
            count = 0
            for shard in shards:
                try:
                    count += _rebuild(shard.client, rollup.on_shard(shard.suffix), days)
                except clickhouse_client.ERRORS as error:
                    raise RollupError(
                        f"rebuilding {rollup.table}{shard.where} failed "
                        f"({clickhouse_client.describe(error)}): its rows of those days may be "
                        "missing until the same rebuild is run again "
                        f"(rebuilt: {', '.join(rows)})"
                    ) from error
            rows[rollup.table] = count
    finally:
        for shard in shards:
            shard.client.disconnect()
    return rows


def _rebuild(client: Any, rollup: Rollup, days: dict[str, date]) -> int:
    """One server's ``rollup`` of the days; the rows it holds for them now."""
    _delete_days(client, rollup.table, days)
    columns = ", ".join(name for name, _ in clickhouse_client.stored_columns(client, rollup.table))
    client.execute(
        f"INSERT INTO {rollup.table} ({columns}) SELECT {columns} FROM ({rollup.select_of_days()})",
        days,
        # a replicated table drops a block equal to one of its recent ones (the view's insert of
        # the same rows, an earlier rebuild's): after the deletion, that would lose the rows
        settings={"insert_deduplicate": 0},
    )
    [(count,)] = client.execute(f"SELECT count() FROM {rollup.table} WHERE {_DAYS}", days)
    return int(count)


def _delete_days(client: Any, table: str, days: dict[str, date]) -> None:
    """Deletes the rows of the days from ``table`` and waits until its mutations are done. A
    replicated table's mutation is in ZooKeeper when the ALTER returns, but in the server's
    ``system.mutations`` only once the server has read it back: until then it is waited for."""
    known = {mutation_id for mutation_id, _ in client.execute(_MUTATIONS, {"table": table})}
    client.execute(f"ALTER TABLE {table} DELETE WHERE {_DAYS}", days)
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    while True:
        mutations = client.execute(_MUTATIONS, {"table": table})
        appeared = any(mutation_id not in known for mutation_id, _ in mutations)
        if appeared and all(is_done for _, is_done in mutations):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the deletion of its rows did not finish in {MUTATION_TIMEOUT_S} s")
        time.sleep(0.05)

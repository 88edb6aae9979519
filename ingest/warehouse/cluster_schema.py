"""The migrations on a cluster (``ingest.warehouse.topology``), from the same SQL files as on one
server, applied and recorded server by server.

Each ``CREATE TABLE t`` becomes ``t_local`` on every server (``Replicated*MergeTree`` under
``/clickhouse/tables/{shard}/<database>/t`` when shards have replicas) and ``t``, a
``Distributed`` table over the ``t_local`` of every shard, under the name analysts and the
documented queries use. A materialized view reads and writes local tables, so each shard rolls
up its own rows (a replica fetching a part does not fire it again); plain views read the
Distributed tables. ``ALTER TABLE t`` changes ``t_local`` and ``t``.

The mirrors of reference data (``EVERY_SHARD``) are whole on every shard instead, under their own
name and without a Distributed table: the documented queries join them to the Distributed
rollups, and a join's right side runs on each shard (a Distributed one there would be a
distributed query inside a distributed one, which ClickHouse refuses), and they are read with
``FINAL``, which merges only within a shard. Their writer puts every change on every shard.

18.16 runs ``ON CLUSTER`` DDL only through ZooKeeper's task queue, which a cluster of shards
without replicas lacks; so every statement runs on every server, each server keeps its own
``schema_migrations``, and a server that is down is reported and caught up by the next run.
A replicated table's structure lives in ZooKeeper, shared by the shard's replicas: an ALTER on
one reaches the others by itself, so an ``ADD COLUMN`` a server's table already has is left out
(18.16 has no ``ADD COLUMN IF NOT EXISTS``), after waiting a little for a replica to receive it;
and a replica that creates its table after others have altered theirs (it was down) creates it
as a replica of the shard has it now (``SHOW CREATE TABLE``), since ZooKeeper refuses a
structure other than the current one.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.warehouse import client
from ingest.warehouse.schema import (
    Migration,
    applied_versions,
    load_migrations,
    record_migration,
)
from ingest.warehouse.topology import CLUSTER, Topology, server_address

LOCAL = "_local"
EVERY_SHARD = frozenset({"batches", "shipments", "distributors"})
REPLICATED_ALTER_WAIT_S = 10.0
_COMMENT_LINE = re.compile(r"^\s*--.*\n?", re.MULTILINE)
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\s*(\(.*\))\s*ENGINE = (\w+)\(([^)]*)\)(.*)$", re.DOTALL
)
_MATERIALIZED_VIEW = re.compile(
    r"^(CREATE MATERIALIZED VIEW IF NOT EXISTS \w+ TO )(\w+)(\s+AS\s.*)$", re.DOTALL
)
_ALTER = re.compile(r"^ALTER TABLE (\w+)\s+(.*)$", re.DOTALL)
_ADD_COLUMN = re.compile(r"^ADD COLUMN (\w+)\b")
_FROM = re.compile(r"\b(FROM|JOIN)\s+(\w+)\b")
_CREATE_REPLICATED = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (\w+)\b.*\bENGINE = Replicated", re.DOTALL
)
_QUALIFIED_CREATE = re.compile(r"^CREATE TABLE \S+\s")
_ORDER_BY = re.compile(r"\bORDER BY \(?([^()\n]+?)\)?\s*(?:SETTINGS\b|$)", re.MULTILINE)
_HAS_TABLE = "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = %(t)s"


def local_table(name: str) -> str:
    """Where the rows of table ``name`` are stored on each server of a cluster: its local
    table, or the table itself for a mirror whole on every shard."""
    return name if name in EVERY_SHARD else name + LOCAL


def cluster_statements(statement: str, topology: Topology, tables: frozenset[str]) -> list[str]:
    """What ``statement`` of a migration becomes on every server of ``topology``; ``tables``
    are the names the migrations create as tables."""
    text = _COMMENT_LINE.sub("", statement).strip()
    if match := _CREATE_TABLE.match(text):
        name, columns, engine, arguments, rest = match.groups()
        local_engine = f"{engine}({arguments})"
        if topology.replicated:
            path = f"'/clickhouse/tables/{{shard}}/{topology.database}/{name}'"
            replicated = ", ".join(part for part in (path, "'{replica}'", arguments) if part)
            local_engine = f"Replicated{engine}({replicated})"
        if name in EVERY_SHARD:
            return [f"CREATE TABLE IF NOT EXISTS {name} {columns}\nENGINE = {local_engine}{rest}"]
        return [
            f"CREATE TABLE IF NOT EXISTS {name}{LOCAL} {columns}\nENGINE = {local_engine}{rest}",
            f"CREATE TABLE IF NOT EXISTS {name} AS {name}{LOCAL}\n"
            f"ENGINE = Distributed({CLUSTER}, {topology.database}, {name}{LOCAL}, "
            f"{_sharding_key(rest)})",
        ]
    if match := _MATERIALIZED_VIEW.match(text):
        head, target, query = match.groups()
        return [head + target + LOCAL + _FROM.sub(_local_source(tables), query)]
    if (match := _ALTER.match(text)) and match.group(1) not in EVERY_SHARD:
        name, changes = match.groups()
        return [f"ALTER TABLE {name}{LOCAL} {changes}", f"ALTER TABLE {name} {changes}"]
    return [statement]


def _sharding_key(rest: str) -> str:
    """Rows written through a Distributed table (a rollup rebuilt, an alert) go to the shard of
    their sort key, so that a key's rows, which Summing, Replacing and Aggregating MergeTree
    merge and ``FINAL`` reads, are never split between shards."""
    match = _ORDER_BY.search(rest)
    return f"cityHash64({match.group(1).strip()})" if match else "rand()"


def _local_source(tables: frozenset[str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        keyword, name = match.groups()
        distributed = name in tables and name not in EVERY_SHARD
        return f"{keyword} {name}{LOCAL}" if distributed else match.group(0)

    return replace


@dataclass(frozen=True, slots=True)
class ServerMigrations:
    """One server's outcome of a run: the migrations applied now, or why it was left behind."""

    shard: int
    replica: int
    address: str
    applied: tuple[str, ...] = ()
    error: str | None = None


class _Server:
    def __init__(self, shard: int, replica: int, url: str, client: Any) -> None:
        self.shard, self.replica, self.client = shard, replica, client
        self.peers: list[_Server] = []
        """The shard's other replicas."""
        self.address = server_address(url)
        self.versions: set[int] = set()
        self.applied: list[str] = []
        self.error: str | None = None

    def outcome(self) -> ServerMigrations:
        applied = tuple(self.applied)
        return ServerMigrations(self.shard, self.replica, self.address, applied, self.error)


def apply_cluster_migrations(topology: Topology) -> list[ServerMigrations]:
    """The migrations on every server of ``topology``, statement by statement on all servers in
    turn (a replica must create a replicated table before another replica's ALTER changes its
    structure in ZooKeeper); a server that fails with one of ``errors`` (down, refusing) is
    reported and left out of the rest of the run, the others go on."""
    errors = client.ERRORS
    migrations = load_migrations()
    tables = frozenset(_created_tables(migrations))
    servers = [_Server(*server, client.connect(server[2])) for server in topology.servers()]
    for server in servers:
        server.peers = [s for s in servers if s.shard == server.shard and s is not server]

    def on_each(servers: list[_Server], step: Callable[[_Server], None]) -> None:
        for server in servers:
            if server.error is None:
                try:
                    step(server)
                except errors as error:
                    server.error = client.describe(error)

    try:
        on_each(servers, lambda server: server.versions.update(applied_versions(server.client)))
        for migration in migrations:
            behind = [server for server in servers if migration.version not in server.versions]
            for statement in migration.statements:
                on_each(behind, functools.partial(_execute, statement, topology, tables))
            on_each(behind, functools.partial(_record, migration))
    finally:
        for server in servers:
            server.client.disconnect()
    return [server.outcome() for server in servers]


def _record(migration: Migration, server: _Server) -> None:
    record_migration(server.client, migration)
    server.applied.append(migration.name)


def _execute(statement: str, topology: Topology, tables: frozenset[str], server: _Server) -> None:
    for prepared in _prepared(statement, topology, tables, server):
        server.client.execute(
            _as_peers_have_it(prepared, server) if topology.replicated else prepared
        )


def _as_peers_have_it(statement: str, server: _Server) -> str:
    """A local table's CREATE as a replica of the shard that has the table has it now (with the
    ALTERs this server missed), or ``statement`` when none has it."""
    match = _CREATE_REPLICATED.match(statement)
    if match is None:
        return statement
    name = match.group(1)
    for peer in server.peers:
        if peer.error is None and peer.client.execute(_HAS_TABLE, {"t": name}) == [(1,)]:
            [(ddl,)] = peer.client.execute(f"SHOW CREATE TABLE {name}")
            return _QUALIFIED_CREATE.sub(f"CREATE TABLE IF NOT EXISTS {name} ", str(ddl), count=1)
    return statement


def _created_tables(migrations: Sequence[Migration]) -> list[str]:
    return [
        match.group(1)
        for migration in migrations
        for statement in migration.statements
        if (match := _CREATE_TABLE.match(_COMMENT_LINE.sub("", statement).strip()))
    ]


def _prepared(
    statement: str, topology: Topology, tables: frozenset[str], server: _Server
) -> list[str]:
    """The statement's cluster form, less the columns the server's tables already have."""
    prepared = []
    for text in cluster_statements(statement, topology, tables):
        if (match := _ALTER.match(text)) is None:
            prepared.append(text)
            continue
        name, changes = match.groups()
        clauses = re.split(r",\s*(?=ADD COLUMN\b)", changes.strip().rstrip(";"))
        added = [m.group(1) for clause in clauses if (m := _ADD_COLUMN.match(clause))]
        replicated = topology.replicated and (name.endswith(LOCAL) or name in EVERY_SHARD)
        peer_has = replicated and any(_peer_has(peer, name, added) for peer in server.peers)
        wait_s = REPLICATED_ALTER_WAIT_S if peer_has else 0
        present = _columns_present(server.client, name, added, wait_s)
        kept = [c for c in clauses if not ((m := _ADD_COLUMN.match(c)) and m.group(1) in present)]
        if kept:
            prepared.append(f"ALTER TABLE {name} {', '.join(kept)}")
    return prepared


def _peer_has(peer: _Server, table: str, columns: list[str]) -> bool:
    """Whether a live replica of the shard has ``columns`` already: then its ALTER reaches this
    server by replication, and is waited for rather than run again."""
    return peer.error is None and len(_columns_present(peer.client, table, columns, 0)) == len(
        columns
    )


def _columns_present(client: Any, table: str, columns: list[str], wait_s: float) -> set[str]:
    """Which of ``columns`` ``table`` has; waits up to ``wait_s`` for all of them to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = client.execute(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = %(t)s",
            {"t": table},
        )
        present = {name for (name,) in rows} & set(columns)
        if len(present) == len(columns) or time.monotonic() >= deadline:
            return present
        time.sleep(0.2)

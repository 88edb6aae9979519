"""Schema migrations for ClickHouse: numbered SQL files applied once each, in order.

Migrations live in ``ingest/migrations`` as ``NNNN_name.sql`` (shipped as package data). A file
holds one or more statements, each ending with ``;`` at the end of a line. ClickHouse has no
transactional DDL, so a migration is recorded in ``schema_migrations`` only after all its
statements ran, and its statements must be safe to run again (``IF NOT EXISTS``): a migration
interrupted half-way is simply applied again on the next run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.MULTILINE)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(version UInt32, name String, applied DateTime)
ENGINE = MergeTree() ORDER BY version
"""


class MigrationError(RuntimeError):
    """The migration files are malformed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The migrations of ``folder`` (default: the package's), ordered by version."""
    folder = folder or resources.files("ingest.warehouse") / "migrations"
    migrations: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{entry.name}: two migrations have version {version}")
        statements = _statements(entry.read_text("utf-8"))
        if not statements:
            raise MigrationError(f"{entry.name}: no statement")
        migrations[version] = Migration(version, entry.name.removesuffix(".sql"), statements)
    return [migrations[version] for version in sorted(migrations)]


def _statements(text: str) -> tuple[str, ...]:
    parts = (part.strip() for part in _STATEMENT_END.split(text))
    return tuple(part for part in parts if _COMMENT_LINE.sub("", part).strip())


def apply_migrations(client: Any, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Applies the migrations not yet recorded in the client's database; returns their names."""
    applied = applied_versions(client)
    names = []
    for migration in load_migrations() if migrations is None else migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            client.execute(statement)
        record_migration(client, migration)
        names.append(migration.name)
    return names


def applied_versions(client: Any) -> set[int]:
    """The versions recorded in the client's database (the record table made if missing)."""
    client.execute(_CREATE_TABLE)
    return {version for (version,) in client.execute("SELECT version FROM schema_migrations")}


def record_migration(client: Any, migration: Migration) -> None:
    """Recorded only after all its statements ran (see the module's documentation)."""
    client.execute(
        "INSERT INTO schema_migrations (version, name, applied) "
        "SELECT %(version)s, %(name)s, now()",
        {"version": migration.version, "name": migration.name},
    )

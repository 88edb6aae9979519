"""The ClickHouse commands: ``migrate``, ``sql``, ``export``, ``rollups rebuild``, ``alerts``
and ``rewards audit``."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from ingest.cli.common import (
    CommandError,
    Subcommands,
    add_days,
    background_service,
    clickhouse_of,
    output_file,
    positive,
    print_json,
    settings_of,
)
from ingest.config import Settings
from ingest.store import connect
from ingest.warehouse import alerts, export, query_output, reward_audit, rollups
from ingest.warehouse import client as clickhouse_client
from ingest.warehouse.cluster_schema import ServerMigrations, apply_cluster_migrations
from ingest.warehouse.schema import apply_migrations
from ingest.warehouse.topology import Topology

log = logging.getLogger(__name__)


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    migrate = commands.add_parser(
        "migrate", parents=[common], help="apply the ClickHouse migrations not yet applied"
    )
    migrate.set_defaults(run=migrate_command)

    sql = commands.add_parser(
        "sql", parents=[common], help="run a ClickHouse query; TabSeparated output"
    )
    sql.add_argument("query", help="the query, in ClickHouse's SQL")
    sql.add_argument("--json", action="store_true", help="a JSON array of objects instead")
    sql.set_defaults(run=sql_command)

    exported = commands.add_parser(
        "export", parents=[common], help="write scans from ClickHouse to a CSV or Parquet file"
    )
    exported.add_argument("table", choices=["scans"], help="the table to export")
    add_days(exported, until_required=False)
    exported.add_argument(
        "--format", default="csv", choices=export.FILE_FORMATS, help="the file's format"
    )
    exported.add_argument("--output", type=Path, help="file to write (default: stdout)")
    exported.set_defaults(run=export_command)

    rollup = commands.add_parser("rollups", help="rebuild the analysts' rollups of past days")
    rollup_actions = rollup.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = rollup_actions.add_parser(
        "rebuild",
        parents=[common],
        help="compute the rollups of past days again from the raw tables (after a view failed, "
        "or for rows stored before the views existed)",
    )
    add_days(rebuild, until_required=True)
    rollup.set_defaults(run=rollups_command)

    alert = commands.add_parser(
        "alerts", parents=[common], help="detect fraud alerts in ClickHouse, or list open ones"
    )
    alert.add_argument(
        "action",
        choices=["run", "detect", "list"],
        help="run: detect every SCANWARD_ALERT_INTERVAL_S until stopped; detect: once, "
        "and print a summary; list: print the open alerts as JSON",
    )
    alert.add_argument("--kind", help="list: only this kind (diversion_batch, device_farm, ...)")
    alert.add_argument("--distributor", help="list: only this distributor's")
    alert.add_argument("--limit", type=positive, default=100, help="list: at most this many")
    alert.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    alert.set_defaults(run=alerts_command)

    rewards = commands.add_parser("rewards", help="audit a campaign's prize draws")
    reward_actions = rewards.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit = reward_actions.add_parser(
        "audit", parents=[common], help="recompute a day's draws from ClickHouse and the seed"
    )
    audit.add_argument("--campaign", required=True, help="the campaign's id")
    audit.add_argument("--day", required=True, type=date.fromisoformat, help="YYYY-MM-DD, local")
    audit.add_argument(
        "--seed", type=bytes.fromhex, help="the day's revealed seed (hex); default: the stored one"
    )
    rewards.set_defaults(run=rewards_command)


def migrate_command(args: argparse.Namespace) -> None:
    """One server: the migrations applied now. A cluster: a line per server, and exit 1 if one
    was left behind (the next run catches it up)."""
    settings = settings_of(args, needs_clickhouse=True)
    assert settings.clickhouse_url is not None
    topology = Topology.parse(settings.clickhouse_url)
    if topology.clustered:
        outcomes = apply_cluster_migrations(topology)
        for outcome in outcomes:
            print(server_line(outcome))
        if any(outcome.error for outcome in outcomes):
            raise CommandError("some servers were not migrated; run it again once they are up")
        return
    applied = apply_all_migrations(settings)
    for name in applied:
        print(name)
    if not applied:
        print("the schema is up to date", file=sys.stderr)


def server_line(outcome: ServerMigrations) -> str:
    where = f"shard {outcome.shard} replica {outcome.replica} ({outcome.address})"
    if outcome.error:
        return f"{where}: not migrated: {outcome.error}"
    return f"{where}: {', '.join(outcome.applied) if outcome.applied else 'up to date'}"


def apply_all_migrations(settings: Settings) -> list[str]:
    """The names of the migrations applied now (none when the schema was up to date)."""
    client = clickhouse_of(settings)
    try:
        return apply_migrations(client)
    finally:
        client.disconnect()


def sql_command(args: argparse.Namespace) -> None:
    client = clickhouse_of(settings_of(args, needs_clickhouse=True))
    try:
        rows, columns = client.execute(args.query, with_column_types=True)
    finally:
        client.disconnect()
    if args.json:
        names = [name for name, _ in columns]
        sys.stdout.buffer.write(query_output.json_objects(names, rows) + b"\n")
    else:
        sys.stdout.writelines(query_output.tab_separated(rows))


def export_command(args: argparse.Namespace) -> None:
    """Scans of a date range to a CSV or Parquet file (standard output without ``--output``)."""
    if args.until is not None and args.until <= args.since:
        raise CommandError("--until must be after --since (it is the first day left out)")
    client = clickhouse_of(settings_of(args, needs_clickhouse=True))
    try:
        with output_file(args.output, "scans") as output:
            count = export.export_scans(client, args.since, args.until, args.format, output)
    finally:
        client.disconnect()
    print(f"exported {count} scans", file=sys.stderr)


def rollups_command(args: argparse.Namespace) -> None:
    """``rebuild``: the rollups of a range of past days computed again from the raw tables,
    shard by shard on a cluster."""
    clickhouse_url = settings_of(args, needs_clickhouse=True).clickhouse_url
    assert clickhouse_url is not None
    try:
        print_json(rollups.rebuild(Topology.parse(clickhouse_url), args.since, args.until))
    except rollups.RollupError as error:
        raise CommandError(str(error)) from None


def alerts_command(args: argparse.Namespace) -> None:
    """``detect`` once, ``list`` the open alerts, or ``run``: detect every interval until
    stopped (a failed run is logged and tried again at the next interval)."""
    settings = settings_of(args, needs_clickhouse=True)
    client = clickhouse_of(settings)
    if args.action == "list":
        print_json(alerts.open_alerts(client, args.limit, args.kind, args.distributor))
        return
    if args.action == "detect":
        found = alerts.detect(client, settings.fraud_policy)
        print(_detection_summary(found, settings.fraud_policy.alert_window_s))
        return
    stop = background_service(args.supervised)
    while not stop.is_set():
        try:
            found = alerts.detect(client, settings.fraud_policy)
            log.info("%s", _detection_summary(found, settings.fraud_policy.alert_window_s))
        except Exception as error:  # ClickHouse down or restarting: the next run catches up
            log.warning("alert detection failed: %s", clickhouse_client.describe(error))
        stop.wait(settings.alert_interval_s)


def _detection_summary(found: dict[str, int], window_s: int) -> str:
    """One line: how many alerts of each kind one detection found, over which window."""
    window = f"in the scans of the last {window_s} s"
    if not found:
        return f"no alerts {window}"
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(found.items()))
    return f"{sum(found.values())} alert(s) {window}: {kinds}"


def rewards_command(args: argparse.Namespace) -> None:
    """``audit``: recompute a campaign day's draws; exit status 1 when any does not match."""
    settings = settings_of(args, needs_redis=True, needs_clickhouse=True)
    assert settings.redis_url is not None
    redis = connect.sync_client(settings.redis_url)
    client = clickhouse_of(settings)
    try:
        report = reward_audit.audit_day(
            redis, client, args.campaign, args.day, settings.member_tiers, args.seed
        )
    except reward_audit.AuditError as error:
        raise CommandError(str(error)) from None
    finally:
        client.disconnect()
        redis.close()
    print_json(report)
    if not report["ok"]:
        raise CommandError(f"{report['mismatch_count']} draw(s) do not match the rule")

"""``scanward sink`` and ``scanward mirror``: events and reference changes from Redis into
ClickHouse, and a snapshot of the reference data appended to the change streams."""

from __future__ import annotations

import argparse
import os

from ingest.cli.common import (
    CommandError,
    Subcommands,
    background_service,
    print_json,
    settings_of,
)
from ingest.ops import local_services
from ingest.ops.gc_tuning import collect_less_often
from ingest.sink import mirror_snapshot
from ingest.sink.consumer import run_sink
from ingest.sink.lease import LeaseLost
from ingest.store import connect


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    mirror = commands.add_parser(
        "mirror",
        parents=[common],
        help="append every batch, shipment and distributor in Redis to the change streams that "
        "the sink mirrors into ClickHouse (after an upgrade; harmless to repeat)",
    )
    mirror.set_defaults(run=mirror_command)

    sink = commands.add_parser(
        "sink",
        parents=[common],
        help="move scans, prize draws and reference data changes from Redis to ClickHouse "
        "until stopped",
    )
    sink.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    sink.set_defaults(run=sink_command)


def sink_command(args: argparse.Namespace) -> None:
    settings = settings_of(args, needs_redis=True, needs_clickhouse=True)
    stop = background_service(args.supervised)
    collect_less_often()
    os.nice(local_services.BACKGROUND_NICENESS)
    try:
        run_sink(settings, stop)
    except LeaseLost as error:  # exits 1: a supervisor starts it again
        raise CommandError(f"sink stopped: {error}") from None


def mirror_command(args: argparse.Namespace) -> None:
    settings = settings_of(args, needs_redis=True)
    assert settings.redis_url is not None
    redis = connect.sync_client(settings.redis_url)
    try:
        print_json(mirror_snapshot.snapshot(redis))
    finally:
        redis.close()

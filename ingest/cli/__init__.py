"""The ``scanward`` command: one module per command group, each declaring its parser beside its
handlers. May import every ingest package; imports ``benchmarks`` only when ``bench`` runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clickhouse_driver.errors import Error as ClickHouseError
from redis.exceptions import ConnectionError as RedisConnectionError

from codes.errors import CodesError
from ingest.cli import batches, bench, keys, serve, sink, warehouse
from ingest.cli.common import CommandError
from ingest.config import ConfigError
from ingest.ops.local_services import ServiceError
from ingest.warehouse import client as clickhouse_client

_COMMAND_GROUPS = (serve, keys, batches, warehouse, sink, bench)
_DESCRIPTION = "One item, one code: signed product codes, scans, fraud, rewards and analytics."


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, passed_on = parser.parse_known_args(argv)
    if passed_on and not getattr(args, "passes_options_on", False):
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    args.passed_on = passed_on
    try:
        args.run(args)
    except (CommandError, ConfigError, ServiceError, CodesError) as error:
        print(f"scanward: {error}", file=sys.stderr)
        return 1
    except ClickHouseError as error:
        print(f"scanward: ClickHouse: {clickhouse_client.describe(error)}", file=sys.stderr)
        return 1
    except RedisConnectionError as error:
        print(f"scanward: cannot reach Redis ({error}); is 'scanward up' running?", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data folder (SCANWARD_DATA_DIR, ./var)")
    parser = argparse.ArgumentParser(prog="scanward", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in _COMMAND_GROUPS:
        group.add_parser(commands, common)
    return parser

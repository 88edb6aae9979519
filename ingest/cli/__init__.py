"""The ``scanward`` command: one module per command group, each declaring its parser beside its
handlers. May import every ingest package; imports ``benchmarks`` only when ``bench`` runs."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from pathlib import Path

from clickhouse_driver.errors import Error as ClickHouseError
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codes.errors import CodesError
from ingest.cli import batches, bench, keys, member_tokens, serve, sink, warehouse
from ingest.cli.common import CommandError, Parser
from ingest.config import ConfigError, hide_passwords
from ingest.ops.local_services import ServiceError
from ingest.warehouse import client as clickhouse_client

_COMMAND_GROUPS = (serve, keys, batches, warehouse, sink, member_tokens, bench)
_DESCRIPTION = (
    "One item, one code: signed product codes, scans, fraud, rewards and analytics. "
    "Settings come from SCANWARD_* environment variables (or the TOML file SCANWARD_CONFIG "
    "names); 'scanward up' starts a whole local stack. 'scanward COMMAND --help' tells more."
)
_USAGE, _FAILURE, _INTERRUPTED = 2, 1, 130  # exit statuses, as a shell's


def main(argv: list[str] | None = None) -> int:
    """Runs one command; every failure an operator can cause or meet ends in one line on
    standard error (secrets hidden) and an exit status, never a traceback."""
    try:
        parser = build_parser()
        args, passed_on = parser.parse_known_args(argv)
        if passed_on and not getattr(args, "passes_options_on", False):
            parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
        args.passed_on = passed_on
        args.run(args)
        sys.stdout.flush()  # a closed pipe is found here rather than at exit
    except ConfigError as error:
        return _failed(str(error), _USAGE)
    except (CommandError, ServiceError, CodesError) as error:
        return _failed(str(error))
    except ClickHouseError as error:
        return _failed(f"ClickHouse: {clickhouse_client.describe(error)}")
    except (AuthenticationError, AuthorizationError) as error:
        return _failed(f"Redis refused the credentials ({error}): check SCANWARD_REDIS_URL")
    except (RedisConnectionError, RedisTimeoutError, RedisClusterException) as error:
        return _failed(f"cannot reach Redis ({error}); is 'scanward up' running?")
    except RedisError as error:
        return _failed(f"Redis: {error}")
    except BrokenPipeError:  # the reader went away (`scanward export ... | head`)
        _discard_standard_output()
        return _FAILURE
    except OSError as error:  # a file that cannot be read or written
        where = f"{error.filename}: " if error.filename else ""
        return _failed(f"{where}{error.strerror or error}")
    except KeyboardInterrupt:
        return _INTERRUPTED
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; every parser in it shows the defaults in its help."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        help="data folder: the keyring and what 'scanward up' starts and records "
        "(default: $SCANWARD_DATA_DIR, else ./var)",
    )
    parser = Parser(prog="scanward", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _COMMAND_GROUPS:
        group.add_parser(commands, common)
    return parser


def _version() -> str:
    try:
        return metadata.version("scanward")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _failed(message: str, status: int = _FAILURE) -> int:
    print(f"scanward: {hide_passwords(message)}", file=sys.stderr)
    return status


def _discard_standard_output() -> None:
    """Python's recipe: what is still buffered for the closed pipe goes nowhere, rather than
    failing again as the interpreter exits."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

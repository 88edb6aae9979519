"""What every command shares: settings resolved from the environment and ``scanward up``, the
one-line user error, JSON output, connections opened and closed around a command."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias, cast

import orjson
from tqdm import tqdm

from ingest.config import Settings
from ingest.ops import json_logging
from ingest.ops.local_services import ServiceAddresses
from ingest.ops.supervisor import when_orphaned
from ingest.store import connect
from ingest.store.scripts import AsyncRedis
from ingest.warehouse import client as clickhouse_client

# what each command module's ``add_parser`` adds its command to
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        unset = action.default in (None, "", argparse.SUPPRESS) or action.default is False
        if unset or not action.option_strings or "%(default)" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The parsers of every command: their help shows the defaults, and the parsers of their
    subcommands are of this kind too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def settings_of(
    args: argparse.Namespace, *, needs_redis: bool = False, needs_clickhouse: bool = False
) -> Settings:
    """Settings from the environment; missing server URLs come from what `scanward up` recorded."""
    settings = Settings.from_env().with_overrides(
        data_dir=args.data_dir, port=getattr(args, "port", None), host=getattr(args, "host", None)
    )
    missing = [
        server
        for server, needed, url in (
            ("Redis", needs_redis, settings.redis_url),
            ("ClickHouse", needs_clickhouse, settings.clickhouse_url),
        )
        if needed and url is None
    ]
    if missing:
        recorded = ServiceAddresses.load(settings.data_dir)
        if recorded is None:
            raise CommandError(
                f"no {missing[0]}: run 'scanward up --data-dir {settings.data_dir}' "
                f"or set SCANWARD_{missing[0].upper()}_URL"
            )
        settings = replace(
            settings,
            redis_url=settings.redis_url or recorded.redis_url,
            clickhouse_url=settings.clickhouse_url or recorded.clickhouse_url,
        )
    return settings


def keyring_secret(settings: Settings) -> str:
    if not settings.keyring_secret:
        raise CommandError("set SCANWARD_KEYRING_SECRET: it encrypts the keyring at rest")
    return settings.keyring_secret


def print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


@contextlib.asynccontextmanager
async def redis_of(settings: Settings) -> AsyncIterator[AsyncRedis]:
    assert settings.redis_url is not None
    redis = connect.async_client(settings.redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


def clickhouse_of(settings: Settings) -> Any:
    assert settings.clickhouse_url is not None
    return clickhouse_client.connect(settings.clickhouse_url)


@contextlib.contextmanager
def output_file(path: Path | None, what: str, size: int | None = None) -> Iterator[BinaryIO]:
    """The file at ``path``, or standard output without one; on a terminal, a progress bar of
    the bytes written (of ``size``, when known) goes to standard error."""
    with contextlib.ExitStack() as stack:
        handle = sys.stdout.buffer if path is None else stack.enter_context(path.open("wb"))
        bar = tqdm.wrapattr(handle, "write", total=size, desc=what, disable=not sys.stderr.isatty())
        yield cast(BinaryIO, stack.enter_context(bar))
        handle.flush()


def background_service(supervised: bool) -> threading.Event:
    """JSON logs, and an event set by SIGTERM, SIGINT or (supervised) the supervisor's death."""
    json_logging.configure()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if supervised:
        when_orphaned(stop.set)
    return stop


# --- argument types ---------------------------------------------------------------------------


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_days(parser: argparse.ArgumentParser, *, until_required: bool) -> None:
    parser.add_argument("--since", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument(
        "--until",
        required=until_required,
        type=date.fromisoformat,
        help="YYYY-MM-DD, the first day left out",
    )

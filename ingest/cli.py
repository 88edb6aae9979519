"""The ``scanward`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import uvloop
from clickhouse_driver.errors import Error as ClickHouseError
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from benchmarks import suite
from codes.batches import BatchOrder, BatchStatus
from codes.errors import CodesError
from codes.export import CodeExport, ExportFormat
from codes.keyring import Keyring
from ingest import (
    alerts,
    clickhouse_client,
    demo,
    json_logging,
    local_services,
    mirror_snapshot,
    query_output,
    reward_audit,
    rollups,
    scan_export,
)
from ingest.batch_store import BatchStore
from ingest.clickhouse_schema import apply_migrations
from ingest.config import ConfigError, Settings
from ingest.gc_tuning import collect_less_often
from ingest.local_services import ServiceAddresses, ServiceError
from ingest.metrics import MULTIPROC_ENV
from ingest.server import serve, wait_until_serving
from ingest.sink import run_sink
from ingest.supervisor import Supervisor, when_orphaned
from ingest.tokens import Role, TokenStore

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def _settings(
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


def _secret(settings: Settings) -> str:
    if not settings.keyring_secret:
        raise CommandError("set SCANWARD_KEYRING_SECRET: it encrypts the keyring at rest")
    return settings.keyring_secret


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


# --- keys -----------------------------------------------------------------------------------


def keys_command(args: argparse.Namespace) -> None:
    settings = _settings(args)
    path, secret = settings.keyring_file, _secret(settings)
    if args.action == "init":
        if path.exists():
            raise CommandError(f"{path} exists already; use 'scanward keys rotate'")
        keyring = Keyring.new()
    else:
        keyring = Keyring.load(path, secret)
        if args.action == "rotate":
            keyring = keyring.rotate()
        elif args.action == "retire":
            if args.key_id is None:
                raise CommandError("say which key: scanward keys retire KEY_ID")
            keyring = keyring.retire(args.key_id)
    if args.action != "list":
        keyring.save(path, secret)
    current = keyring.current.key_id
    _print_json([{**k.describe(), "current": k.key_id == current} for k in keyring.keys])


# --- batches and tokens -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[Redis]:
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _batch_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True)
    async with _redis(settings) as redis:
        store = BatchStore(redis)
        if args.action == "create":
            order = BatchOrder.create(
                args.sku,
                args.gtin,
                args.quantity,
                args.kind,
                args.line_id,
                max_quantity=settings.max_batch_quantity,
            )
            keyring = Keyring.load(settings.keyring_file, _secret(settings))
            _print_json((await store.create(order, keyring.current.key_id)).to_json())
            return
        batch = await (store.revoke if args.action == "revoke" else store.get)(args.batch_id)
        if batch is None:
            raise CommandError(f"no batch {args.batch_id!r}")
        if args.action != "codes":
            _print_json(batch.to_json())
            return
        if batch.status is BatchStatus.REVOKED:
            raise CommandError(f"batch {batch.batch_id} is revoked")
        keyring = Keyring.load(settings.keyring_file, _secret(settings))
        signer = keyring.signer(batch.key_id, batch.batch_id)
        export = CodeExport.slice(
            batch, signer, ExportFormat(args.format), settings.resolver_url, args.offset, args.limit
        )
        with _output(args.output) as out:
            for chunk in export.chunks():
                out.write(chunk)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    else:
        with path.open("wb") as handle:
            yield handle


async def _token_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True)
    async with _redis(settings) as redis:
        token = await TokenStore(redis, None).create(Role(args.role), args.name)
    _print_json({"token": token, "role": args.role, "name": args.name})


# --- serve ----------------------------------------------------------------------------------


def serve_command(args: argparse.Namespace) -> None:
    """The API alone, in one process or in ``--workers`` processes sharing the port."""
    settings = _settings(args, needs_redis=True).with_overrides(workers=args.workers)
    _secret(settings)
    json_logging.configure()
    if args.worker or settings.workers == 1:
        try:
            uvloop.run(serve(settings, reuse_port=args.worker))
        except OSError as error:
            raise _cannot_serve(settings, error) from None
        return
    _check_port_is_free(settings)
    with (
        tempfile.TemporaryDirectory(prefix="scanward-metrics-") as metrics_dir,
        Supervisor({**settings_environment(settings), MULTIPROC_ENV: metrics_dir}) as supervisor,
    ):
        add_workers(supervisor, settings.workers)
        supervisor.run()


def _cannot_serve(settings: Settings, error: OSError) -> CommandError:
    return CommandError(f"cannot serve on {settings.host}:{settings.port}: {error}")


def settings_environment(settings: Settings) -> dict[str, str]:
    """What a child process needs beyond the inherited environment: the values resolved here."""
    values = {
        "data_dir": str(settings.data_dir),
        "host": settings.host,
        "port": str(settings.port),
        "redis_url": settings.redis_url,
        "clickhouse_url": settings.clickhouse_url,
    }
    return {f"SCANWARD_{k.upper()}": v for k, v in values.items() if v is not None}


def add_workers(supervisor: Supervisor, count: int) -> None:
    for number in range(count):
        supervisor.add(f"api worker {number + 1}", ["serve", "--worker"], stop_group=0)


# --- ClickHouse: migrate, sql, sink ----------------------------------------------------------


def _clickhouse(settings: Settings) -> Any:
    assert settings.clickhouse_url is not None
    return clickhouse_client.connect(settings.clickhouse_url)


def migrate_command(args: argparse.Namespace) -> None:
    applied = _apply_migrations(_settings(args, needs_clickhouse=True))
    for name in applied:
        print(name)
    if not applied:
        print("the schema is up to date", file=sys.stderr)


def _apply_migrations(settings: Settings) -> list[str]:
    client = _clickhouse(settings)
    try:
        return apply_migrations(client)
    finally:
        client.disconnect()


def sql_command(args: argparse.Namespace) -> None:
    client = _clickhouse(_settings(args, needs_clickhouse=True))
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
    client = _clickhouse(_settings(args, needs_clickhouse=True))
    try:
        with _output(args.output) as output:
            count = scan_export.export_scans(client, args.since, args.until, args.format, output)
    finally:
        client.disconnect()
    print(f"exported {count} scans", file=sys.stderr)


def mirror_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True)
    assert settings.redis_url is not None
    redis = SyncRedis.from_url(settings.redis_url)
    try:
        _print_json(mirror_snapshot.snapshot(redis))
    finally:
        redis.close()


def rollups_command(args: argparse.Namespace) -> None:
    """``rebuild``: the rollups of a range of past days computed again from the raw tables."""
    client = _clickhouse(_settings(args, needs_clickhouse=True))
    try:
        _print_json(rollups.rebuild(client, args.since, args.until))
    except rollups.RollupError as error:
        raise CommandError(str(error)) from None
    finally:
        client.disconnect()


def _background_service(supervised: bool) -> threading.Event:
    """JSON logs, and an event set by SIGTERM, SIGINT or (supervised) the supervisor's death."""
    json_logging.configure()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if supervised:
        when_orphaned(stop.set)
    return stop


def sink_command(args: argparse.Namespace) -> None:
    settings = _settings(args, needs_redis=True, needs_clickhouse=True)
    stop = _background_service(args.supervised)
    collect_less_often()
    os.nice(local_services.BACKGROUND_NICENESS)
    run_sink(settings, stop)


def alerts_command(args: argparse.Namespace) -> None:
    """``detect`` once, ``list`` the open alerts, or ``run``: detect every interval until
    stopped (a failed run is logged and tried again at the next interval)."""
    settings = _settings(args, needs_clickhouse=True)
    client = _clickhouse(settings)
    if args.action == "list":
        _print_json(alerts.open_alerts(client, args.limit, args.kind, args.distributor))
        return
    if args.action == "detect":
        alerts.detect(client, settings.fraud_policy)
        return
    stop = _background_service(args.supervised)
    while not stop.is_set():
        try:
            alerts.detect(client, settings.fraud_policy)
        except Exception as error:  # ClickHouse down or restarting: the next run catches up
            log.warning("alert detection failed: %s", clickhouse_client.describe(error))
        stop.wait(settings.alert_interval_s)


def rewards_command(args: argparse.Namespace) -> None:
    """``audit``: recompute a campaign day's draws; exit status 1 when any does not match."""
    settings = _settings(args, needs_redis=True, needs_clickhouse=True)
    assert settings.redis_url is not None
    redis = SyncRedis.from_url(settings.redis_url)
    client = _clickhouse(settings)
    try:
        report = reward_audit.audit_day(
            redis, client, args.campaign, args.day, settings.member_tiers, args.seed
        )
    except reward_audit.AuditError as error:
        raise CommandError(str(error)) from None
    finally:
        client.disconnect()
        redis.close()
    _print_json(report)
    if not report["ok"]:
        raise CommandError(f"{report['mismatch_count']} draw(s) do not match the rule")


def bench_command(args: argparse.Namespace) -> None:
    """The load-test suite; SIGTERM stops it as Ctrl-C does, stopping what it started."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        suite.bench(args)
    except suite.BenchError as error:
        raise CommandError(str(error)) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# --- up -------------------------------------------------------------------------------------


def up_command(args: argparse.Namespace) -> None:
    """Redis and ClickHouse (unless configured), the schema, API workers and the sink."""
    settings = _settings(args).with_overrides(workers=args.workers)
    secret = _secret(settings)
    json_logging.configure()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.keyring_file.exists():
        Keyring.new().save(settings.keyring_file, secret)
        print(f"created a keyring with one master key at {settings.keyring_file}")
    _check_port_is_free(settings)
    with contextlib.ExitStack() as stack:
        stack.enter_context(local_services.data_folder_lock(settings.data_dir))
        redis_url, clickhouse_url = settings.redis_url, settings.clickhouse_url
        if redis_url is None:
            redis_url = stack.enter_context(
                _stopping(local_services.start_redis(settings.data_dir))
            )
        if clickhouse_url is None:
            clickhouse_url = stack.enter_context(
                _stopping(local_services.start_clickhouse(settings.data_dir))
            )
        settings = replace(settings, redis_url=redis_url, clickhouse_url=clickhouse_url)
        api_url = f"http://{settings.host}:{settings.port}"
        ServiceAddresses(redis_url, clickhouse_url, api_url).save(settings.data_dir)
        stack.callback((settings.data_dir / local_services.SERVICES_FILE).unlink, missing_ok=True)
        for name in _apply_migrations(settings):
            print(f"applied migration {name}")
        print(f"redis       {redis_url}\nclickhouse  {clickhouse_url}\napi         {api_url}")
        metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="scanward-metrics-"))
        environment = {**settings_environment(settings), MULTIPROC_ENV: metrics_dir}
        supervisor = stack.enter_context(Supervisor(environment))
        add_workers(supervisor, settings.workers)
        supervisor.add("sink", ["sink", "--supervised"], stop_group=1)
        supervisor.add("alerts", ["alerts", "run", "--supervised"], stop_group=1)
        _wait_until_serving(api_url)
        if args.demo:
            asyncio.run(_announce_demo(settings, api_url))
        print(f"serving with {settings.workers} worker(s) and the sink; Ctrl-C stops everything")
        sys.stdout.flush()
        supervisor.run()


def _check_port_is_free(settings: Settings) -> None:
    """Workers bind with SO_REUSEPORT, which would quietly share a port with another stack."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        try:
            probe.bind((settings.host, settings.port))
        except OSError as error:
            raise _cannot_serve(settings, error) from None


def _wait_until_serving(api_url: str, timeout_s: float = 30.0) -> None:
    if not wait_until_serving(api_url, timeout_s):
        raise CommandError(f"the API did not answer at {api_url} within {timeout_s:.0f} s")


@contextlib.contextmanager
def _stopping(server: local_services.ServerProcess) -> Iterator[str]:
    try:
        yield server.url
    finally:
        server.stop()


async def _announce_demo(settings: Settings, api_url: str) -> None:
    async with _redis(settings) as redis:
        batch = await demo.demo_batch(redis, settings.keyring_file, _secret(settings))
        await demo.demo_campaign(redis, settings.member_tiers)
    print(demo.instructions(settings, api_url, batch), flush=True)


# --- argument parsing -------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_days(parser: argparse.ArgumentParser, *, until_required: bool) -> None:
    parser.add_argument("--since", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    parser.add_argument(
        "--until",
        required=until_required,
        type=date.fromisoformat,
        help="YYYY-MM-DD, the first day left out",
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="data folder (SCANWARD_DATA_DIR, ./var)")
    parser = argparse.ArgumentParser(prog="scanward", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", parents=[common], help="start Redis, ClickHouse and the API")
    up.add_argument("--port", type=int)
    up.add_argument("--host")
    up.add_argument("--demo", action="store_true", help="make a demo batch and print curls")
    up.add_argument("--workers", type=_positive, help="API processes sharing the port")
    up.set_defaults(run=up_command)

    serve_parser = commands.add_parser("serve", parents=[common], help="run the API only")
    serve_parser.add_argument("--port", type=int)
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--workers", type=_positive, help="processes sharing the port")
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve_parser.set_defaults(run=serve_command)

    keys = commands.add_parser("keys", parents=[common], help="manage master keys")
    keys.add_argument("action", choices=["init", "rotate", "list", "retire"])
    keys.add_argument("key_id", type=int, nargs="?")
    keys.set_defaults(run=keys_command)

    batch = commands.add_parser("batch", help="order, inspect, download and revoke batches")
    batch_actions = batch.add_subparsers(dest="action", required=True)
    create = batch_actions.add_parser("create", parents=[common])
    create.add_argument("--sku", required=True)
    create.add_argument("--gtin", required=True)
    create.add_argument("--quantity", type=int, required=True)
    create.add_argument("--kind", default="unit", choices=["unit", "case", "pallet"])
    create.add_argument("--line-id", default="")
    for action in ("show", "codes", "revoke"):
        sub = batch_actions.add_parser(action, parents=[common])
        sub.add_argument("batch_id")
        if action == "codes":
            sub.add_argument("--format", default="txt", choices=[f.value for f in ExportFormat])
            sub.add_argument("--offset", type=_count, default=0)
            sub.add_argument("--limit", type=_count)
            sub.add_argument("--output", type=Path, help="file to write (default: stdout)")
    batch.set_defaults(run=lambda a: asyncio.run(_batch_command(a)))

    token = commands.add_parser("token", help="issue API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    token_create = token_actions.add_parser("create", parents=[common])
    token_create.add_argument("--role", required=True, choices=[r.value for r in Role])
    token_create.add_argument("--name", required=True)
    token.set_defaults(run=lambda a: asyncio.run(_token_command(a)))

    migrate = commands.add_parser(
        "migrate", parents=[common], help="apply the ClickHouse migrations not yet applied"
    )
    migrate.set_defaults(run=migrate_command)

    sql = commands.add_parser(
        "sql", parents=[common], help="run a ClickHouse query; TabSeparated output"
    )
    sql.add_argument("query")
    sql.add_argument("--json", action="store_true", help="a JSON array of objects instead")
    sql.set_defaults(run=sql_command)

    export = commands.add_parser(
        "export", parents=[common], help="write scans from ClickHouse to a CSV or Parquet file"
    )
    export.add_argument("table", choices=["scans"])
    _add_days(export, until_required=False)
    export.add_argument("--format", default="csv", choices=scan_export.FILE_FORMATS)
    export.add_argument("--output", type=Path, help="file to write (default: stdout)")
    export.set_defaults(run=export_command)

    rollup = commands.add_parser("rollups", help="rebuild the analysts' rollups of past days")
    rollup_actions = rollup.add_subparsers(dest="action", required=True)
    rebuild = rollup_actions.add_parser(
        "rebuild",
        parents=[common],
        help="compute the rollups of past days again from the raw tables (after a view failed, "
        "or for rows stored before the views existed)",
    )
    _add_days(rebuild, until_required=True)
    rollup.set_defaults(run=rollups_command)

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

    alert = commands.add_parser(
        "alerts", parents=[common], help="detect fraud alerts in ClickHouse, or list open ones"
    )
    alert.add_argument("action", choices=["run", "detect", "list"])
    alert.add_argument("--kind", help="list: only this kind (diversion_batch, device_farm, ...)")
    alert.add_argument("--distributor", help="list: only this distributor's")
    alert.add_argument("--limit", type=_positive, default=100, help="list: at most this many")
    alert.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    alert.set_defaults(run=alerts_command)

    rewards = commands.add_parser("rewards", help="audit a campaign's prize draws")
    reward_actions = rewards.add_subparsers(dest="action", required=True)
    audit = reward_actions.add_parser(
        "audit", parents=[common], help="recompute a day's draws from ClickHouse and the seed"
    )
    audit.add_argument("--campaign", required=True)
    audit.add_argument("--day", required=True, type=date.fromisoformat, help="YYYY-MM-DD, local")
    audit.add_argument(
        "--seed", type=bytes.fromhex, help="the day's revealed seed (hex); default: the stored one"
    )
    rewards.set_defaults(run=rewards_command)

    bench = commands.add_parser(
        "bench", help="load-test a private stack (or --url) and write a report of its figures"
    )
    suite.add_arguments(bench)
    bench.set_defaults(run=bench_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
